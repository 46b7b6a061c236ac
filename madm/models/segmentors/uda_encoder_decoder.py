"""Mean-teacher self-training with DACS ClassMix, as an mmseg EncoderDecoder.

Structure after DAFormer/DACS (Hoyer et al., CVPR 2022; Tranheden et al., WACV 2021);
the implementation is madm's own.
"""
import copy
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.dist import get_rank
from mmseg.models.segmentors import EncoderDecoder
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from mmseg.utils import ConfigType, OptConfigType, OptMultiConfig, SampleList, add_prefix
from torch import Tensor

from madm.models.uda import (class_mix_masks, confident_share, ema_update_, mix,
                             pseudo_label_and_weight, strong_augment, teacher_alpha)
from madm.utils.runtime import adaptation_seed, get_current_iter


@MODELS.register_module()
class UDAEncoderDecoder(EncoderDecoder):
    """Self-training from a labelled source to an unlabelled target domain.

    The student is an ordinary EncoderDecoder; the teacher is an exponential
    moving average of (part of) it. Inference, validation and testing use the
    student through mmseg's normal ``predict`` path (whole or slide).

    .. code:: text

        loss(inputs={'source', 'target'}, data_samples={'source', 'target'}):
          1. update_teacher()                  EMA, alpha_i = min(1 - 1/(i+1), alpha)
          2. loss_source()                     CE on the labelled source
          3. generate_pseudo_labels()          teacher on the clean target (no grad)
          4. class_mix()                       DACS: paste source classes into the target
          5. loss_mixed()                      pixel-weighted CE on the mixed image

    Subclasses change what the teacher sees (:meth:`teacher_logits`) and add loss
    terms (:meth:`extra_source_losses`, :meth:`extra_mixed_losses`).

    The inputs must be images in [0, 1] (data preprocessor ``mean=0, std=255``, as
    the reference, method.md §1): the strong augmentation of the mixed image works
    in that range.

    Args:
        teacher_alpha (float): EMA keep-rate alpha (method.md §7). Defaults to 0.999.
        teacher_mode (str): ``'eval'`` predicts pseudo-labels with dropout off and BN
            running statistics (copied from the student at every update);
            ``'train'`` uses dropout and batch statistics. Reference: ``'train'``
            (method.md §11.2). Defaults to ``'eval'``.
        pseudo_threshold (float): Softmax confidence threshold. Defaults to 0.968.
        pseudo_weight_mode (str): ``'image'``: every target pixel is weighted by the
            image's share of confident pixels (reference, method.md §6);
            ``'pixel'``: by its own confidence test; ``'class_balanced'`` (not in
            MADM): weight 1 on each predicted class's most confident
            ``pseudo_class_keep_share`` of pixels in the batch, 0 elsewhere (CBST's
            rule, :func:`madm.models.uda.class_balanced_selection`; the threshold is
            then only logged). Defaults to ``'image'``.
        pseudo_class_keep_share (float): Share kept per class by
            ``'class_balanced'``. Defaults to 0.5.
        class_mix (dict): ``scope`` (``'batch'``: classes drawn from the whole
            batch's source labels, reference method.md §7; ``'image'``: from each
            image's), ``include_ignore`` (whether 255 may be pasted; reference
            True) and ``on_device`` (choose the classes without a host synchronisation,
            :func:`madm.models.uda.class_mix_masks_on_device`; not in MADM, False).
            Defaults to ``dict(scope='batch', include_ignore=True, on_device=False)``.
        strong_aug (dict): Keyword arguments of :func:`madm.models.uda.strong_augment`
            (colour jitter and blur of the mixed image, method.md §7).
        seed (int | None): Seed of the generator behind every random draw of the
            adaptation (class choice, augmentation, DPLG). None derives it from the
            run's seed and the process rank (:func:`adaptation_seed`), so that each
            ``randomness.seed`` and each process draws its own stream. Its state is
            part of the state dict, so resuming continues the same stream (in several
            processes, rank 0's; the others continue distinct ones, see
            :meth:`set_extra_state`). Defaults to None.
    """

    def __init__(self,
                 backbone: ConfigType,
                 decode_head: ConfigType,
                 neck: OptConfigType = None,
                 auxiliary_head: OptConfigType = None,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 teacher_alpha: float = 0.999,
                 teacher_mode: Literal['eval', 'train'] = 'eval',
                 pseudo_threshold: float = 0.968,
                 pseudo_weight_mode: Literal['image', 'pixel', 'class_balanced'] = 'image',
                 pseudo_class_keep_share: float = 0.5,
                 class_mix: dict | None = None,
                 strong_aug: dict | None = None,
                 seed: int | None = None,
                 init_cfg: OptMultiConfig = None):
        super().__init__(
            backbone=backbone, decode_head=decode_head, neck=neck,
            auxiliary_head=auxiliary_head, train_cfg=train_cfg, test_cfg=test_cfg,
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if not 0.0 <= teacher_alpha < 1.0:
            raise ValueError(f'teacher_alpha must be in [0, 1), got {teacher_alpha}')
        if teacher_mode not in ('eval', 'train'):
            raise ValueError(f"teacher_mode must be 'eval' or 'train', got {teacher_mode!r}")
        self._check_unit_range_inputs()
        self.teacher_alpha = teacher_alpha
        self.teacher_mode = teacher_mode
        self.pseudo_threshold = pseudo_threshold
        self.pseudo_weight_mode = pseudo_weight_mode
        self.pseudo_class_keep_share = pseudo_class_keep_share
        self.class_mix_cfg = {'scope': 'batch', 'include_ignore': True, 'on_device': False,
                              **(class_mix or {})}
        self.strong_aug_cfg = dict(strong_aug or {})
        self.generator = torch.Generator().manual_seed(
            adaptation_seed() if seed is None else seed)
        self.teacher = self.build_teacher()
        self.teacher.requires_grad_(False)
        self.teacher.train(teacher_mode == 'train')
        #: Set by UDAVisualizationHook; loss() then keeps detached tensors for its panel.
        self.keep_debug_outputs = False
        self.debug_outputs: dict[str, Tensor] = {}

    # ------------------------------------------------------------------ teacher
    def build_teacher(self) -> nn.ModuleDict:
        """The EMA teacher: copies of the student parts that are averaged."""
        parts = {'backbone': self.backbone, 'decode_head': self.decode_head}
        if self.with_neck:
            parts['neck'] = self.neck
        return nn.ModuleDict({k: copy.deepcopy(v) for k, v in parts.items()})

    def teacher_student_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(teacher part, student part) pairs matched by the teacher's keys."""
        student = {'backbone': self.backbone, 'decode_head': self.decode_head}
        if self.with_neck:
            student['neck'] = self.neck
        return [(self.teacher[k], student[k]) for k in self.teacher.keys()]

    @torch.no_grad()
    def update_teacher(self, cur_iter: int) -> None:
        """EMA of the parameters; buffers (BN statistics) are copied from the student.

        At iteration 0, alpha is 0, so the teacher becomes an exact copy of the
        student (this also undoes ``init_weights``, which re-initialises the
        teacher's copies independently).
        """
        alpha = teacher_alpha(cur_iter, self.teacher_alpha)
        for teacher, student in self.teacher_student_pairs():
            ema_update_(teacher, student, alpha)
            for t_buf, s_buf in zip(teacher.buffers(), student.buffers()):
                t_buf.copy_(s_buf)

    def train(self, mode: bool = True) -> 'UDAEncoderDecoder':
        super().train(mode)
        if self.teacher_mode == 'eval':
            self.teacher.eval()
        return self

    @torch.no_grad()
    def teacher_logits(self, img: Tensor, cur_iter: int) -> Tensor:
        """Teacher logits at the input resolution, ``(N, C, H, W)``."""
        feats = self.teacher['backbone'](img)
        if 'neck' in self.teacher:
            feats = self.teacher['neck'](feats)
        return self._logits_at(self.teacher['decode_head'](feats), img)

    # ------------------------------------------------------------------ student
    def student_forward(self, img: Tensor) -> tuple[Tensor, dict]:
        """Student logits at the decode head's resolution, plus extras for subclasses."""
        return self.decode_head(self.extract_feat(img)), {}

    def extra_source_losses(self, extras: dict, label: Tensor) -> dict[str, Tensor]:
        """Additional loss terms of the source pass (none here)."""
        return {}

    def extra_mixed_losses(self, extras: dict, label: Tensor, pixel_weight: Tensor,
                           pseudo_weight: Tensor) -> dict[str, Tensor]:
        """Additional loss terms of the mixed pass (none here)."""
        return {}

    # ------------------------------------------------------------------ steps
    def loss(self, inputs: dict[str, Tensor], data_samples: dict[str, SampleList]) -> dict:
        """The adaptation step (see the class docstring for the call graph).

        The EMA update runs here rather than in ``train_step`` because
        ``MMDistributedDataParallel.train_step`` never calls the module's own.

        Args:
            inputs (dict): ``source`` and ``target`` images, ``(N, 3, H, W)`` in [0, 1].
            data_samples (dict): ``source`` samples with ``gt_sem_seg``; ``target``
                samples (their labels, if any, are never read).
        """
        if not isinstance(inputs, dict) or set(inputs) != {'source', 'target'}:
            raise TypeError('UDA training needs batches with source and target images: use '
                            "UDADataset and UDASegDataPreProcessor (got inputs of type "
                            f'{type(inputs).__name__})')
        cur_iter = get_current_iter()
        self.update_teacher(cur_iter)
        src_img, tgt_img = inputs['source'], inputs['target']
        src_samples = data_samples['source']
        src_label = torch.stack([s.gt_sem_seg.data.squeeze(0) for s in src_samples]).long()

        losses = self.loss_source(src_img, src_samples, src_label)
        pseudo_label, pseudo_weight, log_vars = self.generate_pseudo_labels(tgt_img, cur_iter)
        mixed_img, mixed_label, mixed_weight = self.class_mix(
            src_img, tgt_img, src_label, pseudo_label, pseudo_weight)
        losses.update(self.loss_mixed(mixed_img, mixed_label, mixed_weight, pseudo_weight))
        losses.update(log_vars)
        if self.keep_debug_outputs:
            self.debug_outputs.update(source=src_img, target=tgt_img, mixed=mixed_img,
                                      source_label=src_label, pseudo_label=pseudo_label,
                                      mixed_label=mixed_label)
            self.debug_outputs = {k: v.detach() for k, v in self.debug_outputs.items()}
        return losses

    def loss_source(self, img: Tensor, samples: SampleList, label: Tensor) -> dict[str, Tensor]:
        """Cross-entropy (mean over all pixels, ignored ones count as 0) + extras."""
        logits, extras = self.student_forward(img)
        losses = self.decode_head.loss_by_feat(logits, samples)
        losses.update(self.extra_source_losses(extras, label))
        return add_prefix(losses, 'src')

    @torch.no_grad()
    def generate_pseudo_labels(self, img: Tensor, cur_iter: int) -> tuple[Tensor, Tensor, dict]:
        """Teacher pseudo-labels and confidence weights for the clean target.

        Returns:
            tuple: labels ``(N, H, W)`` long, weights ``(N, H, W)`` float, and log-only values.
        """
        logits = self.teacher_logits(img, cur_iter)
        label, weight = pseudo_label_and_weight(
            logits, self.pseudo_threshold, mode=self.pseudo_weight_mode,
            class_keep_share=self.pseudo_class_keep_share)
        if self.pseudo_weight_mode == 'class_balanced':  # its weight ignores the threshold
            confident = confident_share(torch.softmax(logits.float(), 1).amax(1),
                                        self.pseudo_threshold).mean()
            return label, weight, {'tgt.pseudo_weight': weight.mean(),
                                   'tgt.confident_share': confident}
        # Both other modes average to the batch's share of confident pixels ('image': each
        # image's share, equal-sized images; 'pixel': the 0/1 mask), so no second softmax.
        confident = weight.mean()
        return label, weight, {'tgt.pseudo_weight': confident, 'tgt.confident_share': confident}

    @torch.no_grad()
    def class_mix(self, src_img: Tensor, tgt_img: Tensor, src_label: Tensor,
                  pseudo_label: Tensor, pseudo_weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """DACS ClassMix + strong augmentation (method.md §1 step 4, §7).

        Returns:
            tuple: the mixed image ``(N, 3, H, W)``, mixed label ``(N, H, W)`` and the
            pixel weight ``(N, H, W)``: 1 on pasted source pixels, the pseudo-label
            weight elsewhere.
        """
        masks = class_mix_masks(src_label, self.generator,
                                ignore_index=self.decode_head.ignore_index,
                                num_classes=self.decode_head.num_classes, **self.class_mix_cfg)
        mixed_img = mix(masks, src_img, tgt_img)
        mixed_img = strong_augment(mixed_img, self.generator, **self.strong_aug_cfg)
        mixed_label = mix(masks, src_label, pseudo_label)
        mixed_weight = mix(masks, torch.ones_like(pseudo_weight), pseudo_weight)
        return mixed_img, mixed_label, mixed_weight

    def loss_mixed(self, img: Tensor, label: Tensor, pixel_weight: Tensor,
                   pseudo_weight: Tensor) -> dict[str, Tensor]:
        """Pixel-weighted cross-entropy on the mixed image, mean over all pixels + extras."""
        logits, extras = self.student_forward(img)
        logits = self._logits_at(logits, img)
        ce = F.cross_entropy(logits, label, ignore_index=self.decode_head.ignore_index,
                             reduction='none')
        losses = {'loss_ce': (ce * pixel_weight).mean()}
        losses.update(self.extra_mixed_losses(extras, label, pixel_weight, pseudo_weight))
        return add_prefix(losses, 'mix')

    # ------------------------------------------------------------------ helpers
    def _logits_at(self, logits: Tensor, img: Tensor) -> Tensor:
        if logits.shape[2:] == img.shape[2:]:
            return logits
        return resize(logits, size=img.shape[2:], mode='bilinear',
                      align_corners=self.align_corners)

    def _check_unit_range_inputs(self) -> None:
        mean = getattr(self.data_preprocessor, 'mean', None)
        std = getattr(self.data_preprocessor, 'std', None)
        if mean is None or std is None:
            return
        if not (torch.all(mean == 0) and torch.allclose(std, torch.full_like(std, 255.0))):
            raise ValueError('UDA segmentors expect images in [0, 1]: set the data preprocessor '
                             f'to mean=[0, 0, 0], std=[255, 255, 255] (got mean={mean.flatten().tolist()}, '
                             f'std={std.flatten().tolist()})')

    def get_extra_state(self) -> Tensor:
        # A plain tensor, so that mmengine can broadcast it like any state-dict entry.
        return self.generator.get_state()

    def set_extra_state(self, state: Tensor) -> None:
        self.generator.set_state(state)
        rank = get_rank()
        if rank:
            # Checkpoints hold rank 0's state only (mmengine saves on rank 0): other ranks
            # branch off it, so that they do not replay rank 0's draws after a resume.
            branch = int(torch.randint(2**62, (), generator=self.generator))
            self.generator.manual_seed(branch + rank)

