"""Tests for BottleneckProjection (method.md §2.7)."""
import math

import pytest
import torch
import torch.nn as nn
from mmseg.registry import MODELS

from madm.models.utils import AutocastGroupNorm


def test_reference_sizes():
    neck = MODELS.build(dict(type='BottleneckProjection', in_channels=[3, 320, 640, 1280],
                             out_channels=[128, 512, 512, 512]))
    feats = [torch.randn(1, c, s, s) for c, s in zip([3, 320, 640, 1280], [8, 4, 2, 1])]
    outs = neck(feats)
    assert [tuple(o.shape) for o in outs] == [(1, 128, 8, 8), (1, 512, 4, 4), (1, 512, 2, 2),
                                              (1, 512, 1, 1)]
    assert all((o >= 0).all() for o in outs)  # final ReLU
    block = neck.blocks[1]
    assert block.conv1.conv.kernel_size == (1, 1) and block.conv1.conv.out_channels == 128
    assert block.conv2.conv.kernel_size == (3, 3) and block.conv3.conv.out_channels == 512
    assert isinstance(block.conv1.norm, nn.GroupNorm) and block.conv1.norm.num_groups == 32
    assert all(m.bias is None for m in neck.modules() if isinstance(m, nn.Conv2d))
    # Kaiming normal, fan_out, ReLU gain: std = sqrt(2 / (out_channels * k * k)).
    w = block.conv2.conv.weight
    assert abs(w.std().item() - math.sqrt(2 / (128 * 9))) < 0.1 * math.sqrt(2 / (128 * 9))


def test_identity_shortcut_when_widths_match():
    neck = MODELS.build(dict(type='BottleneckProjection', in_channels=[16], out_channels=[16],
                             bottleneck_channels=8, norm_cfg=dict(type='GN', num_groups=4)))
    block = neck.blocks[0]
    assert isinstance(block.shortcut, nn.Identity)
    # With the residual branch's last norm zeroed the block is relu(x).
    nn.init.zeros_(block.conv3.norm.weight)
    x = torch.randn(2, 16, 5, 7)
    torch.testing.assert_close(neck([x])[0], torch.relu(x))


def test_projecting_shortcut_value():
    neck = MODELS.build(dict(type='BottleneckProjection', in_channels=[4], out_channels=[8],
                             bottleneck_channels=8, norm_cfg=dict(type='GN', num_groups=2)))
    block = neck.blocks[0]
    nn.init.zeros_(block.conv3.norm.weight)
    x = torch.randn(1, 4, 3, 3)
    expected = torch.relu(block.shortcut.norm(block.shortcut.conv(x)))
    torch.testing.assert_close(neck([x])[0], expected)


def test_errors():
    with pytest.raises(ValueError, match='same length'):
        MODELS.build(dict(type='BottleneckProjection', in_channels=[3, 4], out_channels=[32]))
    with pytest.raises(ValueError, match='divisible by 32'):
        MODELS.build(dict(type='BottleneckProjection', in_channels=[3], out_channels=[48]))
    neck = MODELS.build(dict(type='BottleneckProjection', in_channels=[3], out_channels=[32],
                             bottleneck_channels=32))
    with pytest.raises(ValueError, match='Expected 1 features'):
        neck([torch.zeros(1, 3, 2, 2)] * 2)


def test_group_norm_precision():
    cfg = dict(type='BottleneckProjection', in_channels=[3, 16], out_channels=[16, 32],
               bottleneck_channels=8, norm_cfg=dict(type='GN', num_groups=4))
    torch.manual_seed(0)
    plain = MODELS.build(cfg)
    torch.manual_seed(0)
    neck = MODELS.build(dict(cfg, group_norm_precision='autocast'))
    norms = [m for m in neck.modules() if isinstance(m, nn.GroupNorm)]
    assert len(norms) == 8 and all(type(m) is AutocastGroupNorm for m in norms)
    feats = [torch.randn(2, 3, 8, 8), torch.randn(2, 16, 4, 4)]
    for out, ref in zip(neck(feats), plain(feats)):  # no autocast: the float32 path exactly
        assert torch.equal(out, ref)
    with pytest.raises(ValueError, match='group_norm_precision'):
        MODELS.build(dict(cfg, group_norm_precision='half'))
