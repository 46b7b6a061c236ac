"""One residual bottleneck block per backbone feature (method.md §2.7)."""
from collections.abc import Sequence
from typing import Literal

import torch.nn as nn
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from mmseg.registry import MODELS
from mmseg.utils import ConfigType, OptConfigType
from torch import Tensor

from madm.models.utils import set_group_norm_precision


class _Bottleneck(nn.Module):
    """ResNet bottleneck at stride 1: 1×1 → 3×3 → 1×1, plus a projecting shortcut.

    ConvModule's default init (kaiming normal, fan_out, ReLU gain; norm weight 1, bias 0) is
    the "MSRA fill" of the reference's detectron2 ``BottleneckBlock``.
    """

    def __init__(self, in_channels: int, out_channels: int, bottleneck_channels: int,
                 norm_cfg: ConfigType) -> None:
        super().__init__()
        common = dict(bias=False, norm_cfg=norm_cfg)
        self.conv1 = ConvModule(in_channels, bottleneck_channels, 1, **common)
        self.conv2 = ConvModule(bottleneck_channels, bottleneck_channels, 3, padding=1, **common)
        self.conv3 = ConvModule(bottleneck_channels, out_channels, 1, act_cfg=None, **common)
        self.shortcut = (
            ConvModule(in_channels, out_channels, 1, act_cfg=None, **common)
            if in_channels != out_channels else nn.Identity())
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.conv3(self.conv2(self.conv1(x))) + self.shortcut(x))


@MODELS.register_module()
class BottleneckProjection(BaseModule):
    """Project each feature with its own residual bottleneck block (method.md §2.7).

    Per input ``i``: ``relu(GN(conv1x1(relu(GN(conv3x3(relu(GN(conv1x1(x)))))))) + sc(x))``
    with bottleneck width ``bottleneck_channels``; the shortcut ``sc`` is a 1×1 conv + GN when
    the channel count changes, identity otherwise. Convs have no bias; stride is 1, so sizes
    are kept. Reference sizes: ``in_channels=[3, 320, 640, 1280]`` (s0 and the UNet taps) →
    ``out_channels=[128, 512, 512, 512]``.

    Args:
        in_channels (Sequence[int]): Channels of each input feature.
        out_channels (Sequence[int]): Channels of each output feature.
        bottleneck_channels (int): Inner width of every block. Defaults to 128.
        norm_cfg (dict): Norm layer config; every width must be divisible by GN's
            ``num_groups``. Defaults to ``dict(type='GN', num_groups=32)``.
        group_norm_precision (Literal['float32', 'autocast']): Precision of the GroupNorms
            under autocast, as the backbone's argument of the same name
            (:class:`~madm.models.utils.AutocastGroupNorm`; not in MADM). The ``s0`` block's
            norms run on 128 channels at the full input size. Defaults to 'float32'.
        init_cfg (dict | None): mmengine init config. Defaults to None (the blocks initialise
            themselves as the reference does).
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 out_channels: Sequence[int],
                 bottleneck_channels: int = 128,
                 norm_cfg: ConfigType = dict(type='GN', num_groups=32),
                 group_norm_precision: Literal['float32', 'autocast'] = 'float32',
                 init_cfg: OptConfigType = None) -> None:
        super().__init__(init_cfg)
        if len(in_channels) != len(out_channels):
            raise ValueError(f'in_channels {list(in_channels)} and out_channels '
                             f'{list(out_channels)} must have the same length.')
        groups = norm_cfg.get('num_groups') if norm_cfg.get('type') == 'GN' else None
        if groups is not None:
            bad = [c for c in (bottleneck_channels, *out_channels) if c % groups]
            if bad:
                raise ValueError(f'GroupNorm with num_groups={groups} needs widths divisible by '
                                 f'{groups}; {bad} are not. Change norm_cfg.num_groups or the '
                                 'channel counts.')
        self.in_channels = list(in_channels)
        self.out_channels = list(out_channels)
        self.blocks = nn.ModuleList(
            _Bottleneck(c_in, c_out, bottleneck_channels, norm_cfg)
            for c_in, c_out in zip(in_channels, out_channels))
        set_group_norm_precision(self, group_norm_precision)

    def forward(self, inputs: Sequence[Tensor]) -> tuple[Tensor, ...]:
        """Project every feature.

        Args:
            inputs (Sequence[Tensor]): Features (N, in_channels[i], H_i, W_i).

        Returns:
            tuple[Tensor, ...]: Features (N, out_channels[i], H_i, W_i).
        """
        if len(inputs) != len(self.blocks):
            raise ValueError(f'Expected {len(self.blocks)} features, got {len(inputs)}.')
        return tuple(block(x) for block, x in zip(self.blocks, inputs))
