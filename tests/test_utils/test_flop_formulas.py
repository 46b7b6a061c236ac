"""madm.utils.flop_formulas: a convolution's backward costs its forward's multiply-adds per
gradient, grouped or not."""
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from madm.utils.flop_formulas import CORRECTED_FLOP_FORMULAS
from madm.utils.roofline import DEVICE_SPECS, RooflineCounter


CONVOLUTIONS = {1: (F.conv1d, F.conv_transpose1d), 2: (F.conv2d, F.conv_transpose2d),
                3: (F.conv3d, F.conv_transpose3d)}


def convolution_flops(dims: int, groups: int, *, transposed: bool, stride: int, dilation: int,
                      output_padding: int, corrected: bool, input_grad: bool = True,
                      weight_grad: bool = True, channels: int = 8,
                      spatial: tuple[int, ...] = (9, 7, 5)) -> tuple[int, int]:
    """(forward, backward) FLOPs of one convolution of ``dims`` spatial dimensions."""
    x = torch.randn(2, channels, *spatial[:dims], requires_grad=input_grad)
    w = torch.randn(channels, channels // groups, *(3,) * dims, requires_grad=weight_grad)
    kwargs = dict(stride=stride, dilation=dilation, groups=groups, padding=1)
    if transposed:
        kwargs['output_padding'] = output_padding
    mapping = CORRECTED_FLOP_FORMULAS if corrected else None
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        y = CONVOLUTIONS[dims][transposed](x, w, **kwargs)
        forward = counter.get_total_flops()
        y.sum().backward()
    return forward, counter.get_total_flops() - forward


def conv_flops(channels: int, groups: int, *, backward: bool, corrected: bool,
               transposed: bool = False, weight_grad: bool = True) -> int:
    """Forward or backward FLOPs of a padded 3x3 2-D convolution over 12x10."""
    forward, backward_flops = convolution_flops(
        2, groups, transposed=transposed, stride=1, dilation=1, output_padding=0,
        corrected=corrected, weight_grad=weight_grad, channels=channels, spatial=(12, 10))
    return backward_flops if backward else forward


@pytest.mark.parametrize('transposed', [False, True])
def test_dense_convolution_backward_matches_torchs_formula(transposed):
    """For groups=1 torch is right; the correction must not change it."""
    ours = conv_flops(8, 1, backward=True, corrected=True, transposed=transposed)
    torchs = conv_flops(8, 1, backward=True, corrected=False, transposed=transposed)
    forward = conv_flops(8, 1, backward=False, corrected=True, transposed=transposed)
    assert ours == torchs == 2 * forward


@pytest.mark.parametrize('transposed', [False, True])
@pytest.mark.parametrize('groups', [2, 16])
def test_grouped_convolution_backward_is_twice_its_forward(groups, transposed):
    forward = conv_flops(16, groups, backward=False, corrected=True, transposed=transposed)
    # the forward by hand: each output element (or input element, transposed) takes
    # 9 * 16 / groups multiply-adds
    assert forward == 2 * (2 * 16 * 12 * 10) * 9 * (16 // groups)
    ours = conv_flops(16, groups, backward=True, corrected=True, transposed=transposed)
    assert ours == 2 * forward
    # torch's own count overcounts the weight gradient by the groups; when a torch release
    # fixes that, this fails, and madm.utils.flop_formulas can go
    torchs = conv_flops(16, groups, backward=True, corrected=False, transposed=transposed)
    assert torchs == forward + groups * forward


def test_backward_without_the_weight_gradient_counts_the_input_gradient_only():
    forward = conv_flops(16, 16, backward=False, corrected=True)
    assert conv_flops(16, 16, backward=True, corrected=True, weight_grad=False) == forward


def test_roofline_counter_uses_the_corrected_formula():
    x = torch.randn(2, 16, 12, 10, device='meta', requires_grad=True)
    w = torch.randn(16, 1, 3, 3, device='meta', requires_grad=True)
    with RooflineCounter(DEVICE_SPECS['h100']) as counter:
        F.conv2d(x, w, padding=1, groups=16).sum().backward()
    summary = counter.summary()
    forward = 2 * (2 * 16 * 12 * 10) * 9
    assert summary['executed_flops'] == 3 * forward



@pytest.mark.parametrize('dims', [1, 2, 3])
@pytest.mark.parametrize('transposed, stride, dilation, output_padding',
                         [(False, 1, 1, 0), (False, 2, 1, 0), (False, 1, 2, 0),
                          (True, 2, 1, 1), (True, 2, 2, 0)])
@pytest.mark.parametrize('groups', [1, 4, 8])
def test_backward_is_the_forward_per_gradient_for_any_convolution(
        dims, transposed, stride, dilation, output_padding, groups):
    shape = dict(dims=dims, groups=groups, transposed=transposed, stride=stride,
                 dilation=dilation, output_padding=output_padding)
    forward, backward = convolution_flops(**shape, corrected=True)
    assert forward > 0 and backward == 2 * forward
    _, weight_only = convolution_flops(**shape, corrected=True, input_grad=False)
    _, input_only = convolution_flops(**shape, corrected=True, weight_grad=False)
    assert weight_only == input_only == forward
    # torch's formula: right for a dense convolution, the weight gradient times the groups
    # for a grouped one (the canary above, here for every shape)
    torchs_forward, torchs = convolution_flops(**shape, corrected=False)
    assert torchs_forward == forward and torchs == forward + groups * forward
