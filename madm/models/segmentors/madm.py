"""MADM: self-training with a Stable Diffusion backbone, DPLG and LPLR (method.md §1, §4, §5)."""
import copy
from typing import Literal

import torch
import torch.nn as nn
from mmseg.registry import MODELS
from mmseg.utils import ConfigType, OptConfigType, OptMultiConfig
from torch import Tensor

from madm.models.uda import dplg_timestep, paint_labels, sample_start_timestep
from .uda_encoder_decoder import UDAEncoderDecoder


@MODELS.register_module()
class MADM(UDAEncoderDecoder):
    """Unsupervised modality adaptation with a diffusion backbone (Xia et al., NeurIPS 2024).

    A :class:`UDAEncoderDecoder` whose backbone is a
    :class:`~madm.models.backbones.StableDiffusionBackbone`, plus:

    * **DPLG** (method.md §4): the teacher's pseudo-labels come from the target
      latent noised to timestep ``k(i) = floor(k0 * (1 - i / end_iter))`` while
      ``i <= end_iter`` (0 afterwards), with ``k0`` drawn per iteration from
      ``start_timestep_range`` (both ends included, as the reference).
    * **LPLR** (method.md §5): each label map is painted with the task palette
      (ignore → black), encoded by the frozen VAE, and the UNet's final output of
      the same student pass is regressed onto that latent with a masked L1 loss;
      the mixed term is masked by the valid mixed label times the target's
      pseudo-label weight (the reference applies it to pasted pixels too).

    .. code:: text

        loss():  update_teacher() -> loss_source() [+ src.loss_lplr]
                 -> generate_pseudo_labels() [teacher at DPLG timestep k(i)]
                 -> class_mix() -> loss_mixed() [+ mix.loss_lplr]

    Args:
        palette (list[list[int]]): RGB colour of each class (the dataset's
            ``METAINFO['palette']``), used to paint labels for LPLR.
        teacher_scope (str): What the teacher averages. ``'head_neck_prompt'``
            (reference, method.md §1/§11.1): the neck, head and prompt/time
            conditioning, while the UNet is shared with the student; ``'full'``:
            a separate EMA copy of the whole backbone too. Defaults to
            ``'head_neck_prompt'``.
        dplg (dict | None): ``dict(start_timestep_range=(lo, hi), end_iter=T)``;
            None disables DPLG (teacher at t=0). Reference: depth (60, 61) / 5000,
            infrared and event (50, 51) / 8000.
        lplr (dict | None): ``dict(source_weight=..., mixed_weight=..., loss=...)``
            where ``loss`` configures :class:`LatentRegressionLoss`; a weight of 0
            drops that term. None disables LPLR. Reference: event 20 / 0, depth
            and infrared 1 / 1.
        **kwargs: the arguments of :class:`UDAEncoderDecoder`.
    """

    def __init__(self,
                 backbone: ConfigType,
                 decode_head: ConfigType,
                 palette: list[list[int]],
                 neck: OptConfigType = None,
                 teacher_scope: Literal['head_neck_prompt', 'full'] = 'head_neck_prompt',
                 dplg: dict | None = None,
                 lplr: dict | None = None,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 init_cfg: OptMultiConfig = None,
                 **kwargs):
        if teacher_scope not in ('head_neck_prompt', 'full'):
            raise ValueError(f"teacher_scope must be 'head_neck_prompt' or 'full', got {teacher_scope!r}")
        self.teacher_scope = teacher_scope
        super().__init__(backbone=backbone, decode_head=decode_head, neck=neck,
                         train_cfg=train_cfg, test_cfg=test_cfg,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg, **kwargs)
        if not hasattr(self.backbone, 'extract'):
            raise TypeError('MADM needs a StableDiffusionBackbone (a backbone with extract()), '
                            f'got {type(self.backbone).__name__}')
        palette_t = torch.as_tensor(palette, dtype=torch.float32)
        if palette_t.ndim != 2 or palette_t.shape != (self.num_classes, 3):
            raise ValueError(f'palette must hold one RGB triple per class ({self.num_classes}), '
                             f'got shape {tuple(palette_t.shape)}')
        self.register_buffer('palette', palette_t, persistent=False)

        self.dplg_cfg = None
        if dplg is not None:
            low, high = dplg['start_timestep_range']
            if not 0 <= low <= high:
                raise ValueError(f'dplg.start_timestep_range must satisfy 0 <= lo <= hi, got {(low, high)}')
            self.dplg_cfg = dict(low=int(low), high=int(high), end_iter=int(dplg['end_iter']))

        self.lplr_cfg = None
        if lplr is not None:
            lplr = dict(lplr)
            self.lplr_loss = MODELS.build(lplr.pop('loss', dict(type='LatentRegressionLoss')))
            self.lplr_cfg = dict(source_weight=float(lplr.pop('source_weight', 1.0)),
                                 mixed_weight=float(lplr.pop('mixed_weight', 1.0)))
            if lplr:
                raise ValueError(f'unknown lplr keys: {sorted(lplr)}')

    # ------------------------------------------------------------------ teacher
    def build_teacher(self) -> nn.ModuleDict:
        parts = {'decode_head': self.decode_head}
        if self.with_neck:
            parts['neck'] = self.neck
        if self.teacher_scope == 'full':
            parts['backbone'] = self.backbone
        else:
            parts['conditioning'] = self.backbone.conditioning
        return nn.ModuleDict({k: copy.deepcopy(v) for k, v in parts.items()})

    def teacher_student_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        student = {'decode_head': self.decode_head, 'backbone': self.backbone,
                   'conditioning': self.backbone.conditioning}
        if self.with_neck:
            student['neck'] = self.neck
        return [(self.teacher[k], student[k]) for k in self.teacher.keys()]

    def dplg_timestep(self, cur_iter: int) -> int:
        """The teacher's noise timestep at this iteration (0 without DPLG)."""
        if self.dplg_cfg is None:
            return 0
        start = sample_start_timestep(self.dplg_cfg['low'], self.dplg_cfg['high'], self.generator)
        return dplg_timestep(cur_iter, start, self.dplg_cfg['end_iter'])

    @torch.no_grad()
    def teacher_logits(self, img: Tensor, cur_iter: int) -> Tensor:
        timestep = self.dplg_timestep(cur_iter)
        if 'backbone' in self.teacher:
            out = self.teacher['backbone'].extract(img, timestep=timestep)
        else:
            out = self.backbone.extract(img, timestep=timestep,
                                        conditioning=self.teacher['conditioning'])
        feats = self.teacher['neck'](out.features) if 'neck' in self.teacher else out.features
        logits = self._logits_at(self.teacher['decode_head'](feats), img)
        self._last_dplg_timestep = timestep
        if self.keep_debug_outputs:
            self.debug_outputs['teacher_decoded'] = out.decoded
        return logits

    @torch.no_grad()
    def generate_pseudo_labels(self, img: Tensor, cur_iter: int) -> tuple[Tensor, Tensor, dict]:
        label, weight, log_vars = super().generate_pseudo_labels(img, cur_iter)
        # A host tensor: a log-only value need not be copied to the GPU (a host wait).
        log_vars['dplg.timestep'] = torch.tensor(float(self._last_dplg_timestep))
        return label, weight, log_vars

    # ------------------------------------------------------------------ student
    def student_forward(self, img: Tensor) -> tuple[Tensor, dict]:
        out = self.backbone.extract(img)
        feats = self.neck(out.features) if self.with_neck else out.features
        return self.decode_head(feats), {'unet_output': out.unet_output, 'decoded': out.decoded}

    def extra_source_losses(self, extras: dict, label: Tensor) -> dict[str, Tensor]:
        if self.keep_debug_outputs and extras['decoded'] is not None:
            self.debug_outputs['source_decoded'] = extras['decoded']
        if self.lplr_cfg is None or self.lplr_cfg['source_weight'] == 0:
            return {}
        loss = self.latent_regression(extras['unet_output'], label, weight=1.0)
        return {'loss_lplr': self.lplr_cfg['source_weight'] * loss}

    def extra_mixed_losses(self, extras: dict, label: Tensor, pixel_weight: Tensor,
                           pseudo_weight: Tensor) -> dict[str, Tensor]:
        if self.lplr_cfg is None or self.lplr_cfg['mixed_weight'] == 0:
            return {}
        loss = self.latent_regression(extras['unet_output'], label, weight=pseudo_weight)
        return {'loss_lplr': self.lplr_cfg['mixed_weight'] * loss}

    def latent_regression(self, unet_output: Tensor, label: Tensor,
                          weight: Tensor | float) -> Tensor:
        """LPLR: L1 between the UNet output and the latent of the painted label."""
        ignore_index = self.decode_head.ignore_index
        with torch.no_grad():
            painted = paint_labels(label, self.palette, ignore_index=ignore_index)
            target = self.backbone.encode_latent(painted)
        return self.lplr_loss(unet_output, target, valid_mask=label != ignore_index,
                              weight=weight)
