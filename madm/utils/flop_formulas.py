"""FLOP formulas for the benchmark's counters, torch's own with one correction (issue 8).

torch's :mod:`torch.utils.flop_counter` (through 2.13 at least) counts a grouped convolution's
weight gradient as if the convolution were dense: it rewrites the gradient as a convolution of
the transposed input with the transposed output gradient, and the group division is lost in
the transposition. A depthwise convolution over C channels is then counted C times over in
backward. The DAFormer head's ASPP branches are depthwise 3×3 convolutions at 512×512 when it
fuses at the reference's full resolution, so torch's count of a MADM step's model FLOPs there is
nearly twice the arithmetic the step does (121.36 against 62.04 TFLOP at SD-1.4 size,
docs/benchmarks.md, sixteenth session), which doubled every MFU computed from it.

:data:`FLOP_FORMULAS` is torch's registry with :func:`conv_backward_flop` in place of torch's
formula for ``aten.convolution_backward``; :data:`CORRECTED_FLOP_FORMULAS` is the correction
alone, in the form ``FlopCounterMode(custom_mapping=...)`` takes.
"""
from collections.abc import Callable, Sequence

import torch
from torch.utils.flop_counter import conv_flop_count, flop_registry, shape_wrapper

aten = torch.ops.aten


def conv_backward_flop(grad_out_shape: Sequence[int], x_shape: Sequence[int],
                       w_shape: Sequence[int], _bias: object, _stride: object,
                       _padding: object, _dilation: object, transposed: bool,
                       _output_padding: object, _groups: int, output_mask: Sequence[bool],
                       out_shape: object = None, **kwargs) -> int:
    """FLOPs of ``aten.convolution_backward``, grouped convolutions included.

    Each gradient the backward computes (input, weight) pairs every weight element with every
    position it touched in the forward once, so each costs the forward's multiply-adds, which
    :func:`~torch.utils.flop_counter.conv_flop_count` gets right for any ``groups`` because
    the weight's shape already holds the channels of one group. The bias gradient is a sum,
    not counted (as torch does not count the forward's bias).

    Args:
        grad_out_shape (Sequence[int]): Shape of the forward's output (and of its gradient).
        x_shape (Sequence[int]): Shape of the forward's input.
        w_shape (Sequence[int]): Shape of the weight.
        transposed (bool): Whether the forward was a transposed convolution.
        output_mask (Sequence[bool]): Which of (input, weight, bias) gradients are computed.
        _bias, _stride, _padding, _dilation, _output_padding, _groups, out_shape, kwargs:
            The operator's other arguments; the count does not depend on them.

    Returns:
        int: FLOPs, a multiply-add counting 2.
    """
    forward = conv_flop_count(list(x_shape), list(w_shape), list(grad_out_shape), transposed)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


#: Formulas (on shapes) that replace torch's, for ``FlopCounterMode(custom_mapping=...)``.
CORRECTED_FLOP_FORMULAS: dict[object, Callable[..., int]] = {
    aten.convolution_backward: conv_backward_flop}
#: torch's registry with the corrections, each formula taking an operator's arguments and
#: ``out_val`` as the registry's do.
FLOP_FORMULAS: dict[object, Callable[..., int]] = {
    **flop_registry, **{op: shape_wrapper(f) for op, f in CORRECTED_FLOP_FORMULAS.items()}}
