"""DAFormer decode head as MADM configures it: MLP embeddings + separable ASPP fusion."""
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Literal

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule, DepthwiseSeparableConvModule
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from mmseg.utils import ConfigType, OptConfigType, SampleList
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

from madm.models.losses import pixel_accuracy
from madm.models.utils import matmul_resize


@MODELS.register_module()
class DAFormerHead(BaseDecodeHead):
    """DAFormer head with MLP embeddings and depthwise-separable ASPP fusion (method.md §3).

    .. code:: text

        input i (N, C_i, H_i, W_i) -> Linear(C_i -> embed_dims) per pixel
          -> bilinear resize to the fusion size -> concat (N, L * embed_dims, Hf, Wf)
          -> ASPP: [1x1 ConvModule, sep. 3x3 ConvModule at dilation 6, 12, 18] -> concat
          -> 3x3 ConvModule -> (N, channels, Hf, Wf) -> Dropout2d -> conv_seg (N, C, Hf, Wf)

    The fusion size is the size of the first selected input (reference; with MADM's ``s0`` that
    is the full image at L * embed_dims = 1024 channels, the memory-dominant part of the model,
    method.md §11.14), or, with ``fusion_stride=s``, ``ceil(H_0 * in_strides[0] / s)`` ×
    ``ceil(W_0 * in_strides[0] / s)``, i.e. 1/s of the input image. Inputs larger than the
    fusion size are resized before their embedding, smaller ones after it; both orders give
    the same result because the embedding is per-pixel affine and bilinear weights sum to 1,
    and the chosen one is cheaper.

    Initialisation: the reference never applies mmseg's Normal(std=0.01) init of ``conv_seg``
    (method.md §11.13), so ``init_cfg`` defaults to None: ``conv_seg`` and the embedding
    linears keep PyTorch's default init; ConvModules initialise themselves (kaiming, norm
    weight 1, bias 0). Pass ``init_cfg=dict(type='Normal', std=0.01,
    override=dict(name='conv_seg'))`` for mmseg's usual head init.

    ``loss_by_feat`` is mmseg's, except that ``acc_seg`` comes from
    :func:`~madm.models.losses.pixel_accuracy`: the same value without mmseg's two host
    waits for the GPU.

    Args:
        in_channels (Sequence[int]): Channels of the selected inputs, e.g.
            [128, 512, 512, 512] for MADM.
        channels (int): Width after fusion (and of each ASPP branch). Defaults to 256.
        in_index (Sequence[int] | None): Which backbone/neck outputs to use, one per
            ``in_channels`` entry. Defaults to None, i.e. all of them in order.
        embed_dims (int): Width of each input's MLP embedding. Defaults to 256.
        dilations (Sequence[int]): ASPP dilations; 1 gives a 1×1 ConvModule, any other value a
            3×3 depthwise-separable ConvModule. Defaults to (1, 6, 12, 18).
        fusion_stride (int | None): Fuse at 1/fusion_stride of the input image instead of at
            the first input's size. Reference: None (method.md §3, §11.14). Defaults to None.
        in_strides (Sequence[int] | None): Stride of each selected input w.r.t. the image,
            e.g. the SD backbone's ``out_strides`` (1, 8, 16, 32); needed with
            ``fusion_stride``. Defaults to None.
        with_cp (bool): Recompute the fusion (embeddings to ``fuse_bottleneck``) in backward
            instead of keeping its activations: at MADM's full-size fusion they are most of
            the training memory (issue 8). BN running statistics are updated once, as
            without it. Defaults to False.
        resize_impl (str): How the embeddings are resized to the fusion size: ``'interpolate'``
            (``F.interpolate``, reference) or ``'matmul'`` (:func:`~madm.models.utils.
            matmul_resize`: the same bilinear weights as two matrix products, whose backward
            avoids ``F.interpolate``'s atomic scatter, 20 % of a full-size H100 step).
            Defaults to ``'interpolate'``.
        norm_cfg (dict): Norm of the fusion ConvModules. Defaults to
            ``dict(type='BN', requires_grad=True)`` (plain BN, method.md §3).
        init_cfg (dict | None): See "Initialisation". Defaults to None.
        **kwargs: Other :class:`BaseDecodeHead` arguments (``num_classes``,
            ``dropout_ratio``, ``align_corners``, ``loss_decode``, ...). ``input_transform``
            is always ``'multiple_select'``.
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 channels: int = 256,
                 *,
                 in_index: Sequence[int] | None = None,
                 embed_dims: int = 256,
                 dilations: Sequence[int] = (1, 6, 12, 18),
                 fusion_stride: int | None = None,
                 in_strides: Sequence[int] | None = None,
                 with_cp: bool = False,
                 resize_impl: Literal['interpolate', 'matmul'] = 'interpolate',
                 norm_cfg: ConfigType = dict(type='BN', requires_grad=True),
                 init_cfg: OptConfigType = None,
                 **kwargs) -> None:
        in_index = list(range(len(in_channels))) if in_index is None else list(in_index)
        super().__init__(list(in_channels), channels, in_index=in_index,
                         input_transform='multiple_select', norm_cfg=norm_cfg,
                         init_cfg=init_cfg, **kwargs)
        if fusion_stride is not None:
            if fusion_stride < 1:
                raise ValueError(f'fusion_stride must be a positive int, got {fusion_stride}.')
            if in_strides is None or len(in_strides) != len(self.in_channels):
                raise ValueError('fusion_stride needs in_strides, one stride per selected input '
                                 f'({len(self.in_channels)}), e.g. the backbone\'s out_strides; '
                                 f'got {in_strides}.')
        self.fusion_stride = fusion_stride
        self.with_cp = with_cp
        if resize_impl not in ('interpolate', 'matmul'):
            raise ValueError("resize_impl must be 'interpolate' or 'matmul', got "
                             f'{resize_impl!r}.')
        self.resize_impl = resize_impl
        self.in_strides = None if in_strides is None else tuple(in_strides)
        self.embed_dims = embed_dims
        self.embed_layers = nn.ModuleList(nn.Linear(c, embed_dims) for c in self.in_channels)

        fused_in = embed_dims * len(self.in_channels)
        conv_kw = dict(conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)
        self.aspp = nn.ModuleList(
            ConvModule(fused_in, channels, 1, **conv_kw) if d == 1 else
            DepthwiseSeparableConvModule(fused_in, channels, 3, dilation=d, padding=d, **conv_kw)
            for d in dilations)
        self.fuse_bottleneck = ConvModule(channels * len(dilations), channels, 3, padding=1,
                                          **conv_kw)

    def fusion_size(self, inputs: Sequence[Tensor]) -> tuple[int, int]:
        """Spatial size at which the embeddings are fused.

        Args:
            inputs (Sequence[Tensor]): The selected inputs, first one (N, C_0, H_0, W_0).

        Returns:
            tuple[int, int]: ``(H_0, W_0)`` without ``fusion_stride``, else
            ``(ceil(H_0 * in_strides[0] / fusion_stride), ceil(W_0 * in_strides[0] /
            fusion_stride))``.
        """
        h, w = inputs[0].shape[-2:]
        if self.fusion_stride is None:
            return int(h), int(w)
        s0 = self.in_strides[0]
        return -(-h * s0 // self.fusion_stride), -(-w * s0 // self.fusion_stride)

    def _embed(self, layer: nn.Linear, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        out = layer(x.flatten(2).transpose(1, 2))  # (N, H*W, E): the reference's "mlp" embed
        # The transposed view has channels-last strides; left so, the concatenation feeds the
        # ASPP's depthwise convolutions an NHWC tensor, for which cuDNN's dilated depthwise
        # kernels took 13x as long (forward + backward) as NCHW on an H100 (docs/benchmarks.md).
        return out.transpose(1, 2).reshape(n, -1, h, w).contiguous()

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        """Fuse the selected inputs and classify.

        Args:
            inputs (Sequence[Tensor]): Backbone/neck features; ``in_index`` selects them.

        Returns:
            Tensor: Logits (N, num_classes, Hf, Wf) at the fusion size.
        """
        inputs = self._transform_inputs(inputs)
        if self.with_cp and torch.is_grad_enabled() and any(x.requires_grad for x in inputs):
            x = checkpoint(self._fuse, *inputs, use_reentrant=False,
                           context_fn=_bn_stats_frozen_on_recompute(self))
        else:
            x = self._fuse(*inputs)
        return self.cls_seg(x)

    def loss_by_feat(self, seg_logits: Tensor, batch_data_samples: SampleList) -> dict:
        """mmseg's decode losses at the label size, and ``acc_seg`` (class docstring)."""
        seg_label = self._stack_batch_gt(batch_data_samples)
        seg_logits = resize(seg_logits, size=seg_label.shape[2:], mode='bilinear',
                            align_corners=self.align_corners)
        seg_weight = (self.sampler.sample(seg_logits, seg_label)
                      if self.sampler is not None else None)
        seg_label = seg_label.squeeze(1)
        losses_decode = (self.loss_decode if isinstance(self.loss_decode, nn.ModuleList) else
                         [self.loss_decode])
        loss = {}
        for loss_decode in losses_decode:
            value = loss_decode(seg_logits, seg_label, weight=seg_weight,
                                ignore_index=self.ignore_index)
            loss[loss_decode.loss_name] = loss.get(loss_decode.loss_name, 0) + value
        loss['acc_seg'] = pixel_accuracy(seg_logits, seg_label, self.ignore_index)
        return loss

    def _resize(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        if self.resize_impl == 'matmul':
            return matmul_resize(x, size, self.align_corners)
        return resize(x, size=size, mode='bilinear', align_corners=self.align_corners)

    def _fuse(self, *inputs: Tensor) -> Tensor:
        """Embed, resize, concatenate and fuse the inputs: (N, channels, Hf, Wf)."""
        size = self.fusion_size(inputs)
        embeds = []
        for layer, x in zip(self.embed_layers, inputs):
            if x.shape[-2] * x.shape[-1] > size[0] * size[1]:
                x = self._embed(layer, self._resize(x, size))
            else:
                x = self._embed(layer, x)
                if x.shape[-2:] != size:
                    x = self._resize(x, size)
            embeds.append(x)
        x = torch.cat(embeds, dim=1)
        return self.fuse_bottleneck(torch.cat([branch(x) for branch in self.aspp], dim=1))


def _bn_stats_frozen_on_recompute(
        module: nn.Module) -> Callable[[], tuple[AbstractContextManager, AbstractContextManager]]:
    """``checkpoint``'s ``context_fn``: the recomputation leaves BN running statistics alone.

    The forward already updated them once; a second update from the same batch would apply
    the momentum twice.
    """

    @contextmanager
    def frozen() -> Iterator[None]:
        norms = [m for m in module.modules() if isinstance(m, _BatchNorm) and m.training
                 and m.track_running_stats]
        saved = [(m.momentum, m.num_batches_tracked.clone()) for m in norms]
        for m in norms:
            m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch
        try:
            yield
        finally:
            for m, (momentum, tracked) in zip(norms, saved):
                m.momentum = momentum
                m.num_batches_tracked.copy_(tracked)

    return lambda: (nullcontext(), frozen())
