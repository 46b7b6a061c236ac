"""Time and check the DAFormer head's depthwise convolution alone, per memory format (issue 8).

The separable ASPP's dilated 3x3 depthwise convolutions took 70 % of a full-size MADM step on
an H200 while their input had channels-last strides (docs/benchmarks.md). This measures one of
them (forward, and forward + backward) in each memory format at the head's real shape, and how
far each result is from an fp32 reference computed from the same bf16-rounded inputs.
"""
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from madm.utils.benchmark import _median, _timed

#: The implementations :func:`benchmark_depthwise` knows: ``nn.Conv2d(groups=C)`` on NCHW
#: (contiguous) input and weights, and the same in channels-last (NHWC) memory format.
DEPTHWISE_IMPLS = ('conv', 'conv channels-last')

#: Seen with torch 2.13 on this project's CPU machines (oneDNN): a bf16 channels-last dilated
#: depthwise convolution's weight gradient is wrong (max error larger than the gradient
#: itself, at 64 channels, 64x64) and, run repeatedly, the process segfaults.
CPU_CHANNELS_LAST_BUG = (
    "Channels-last depthwise convolutions under CPU autocast are refused: torch's oneDNN "
    'kernels returned wrong weight gradients and crashed here (torch 2.13). Use amp none on '
    'the CPU, or a GPU.')


@dataclass
class DepthwiseTiming:
    """One implementation at one dilation.

    Attributes:
        impl (str): One of :data:`DEPTHWISE_IMPLS`.
        dilation (int): Dilation (= padding) of the 3x3 kernel.
        forward_ms (float): Median milliseconds of a forward.
        forward_backward_ms (float): Median milliseconds of a forward and a backward to the
            input and the weight.
        max_abs_err (dict): ``'out'``, ``'grad_x'``, ``'grad_w'`` → largest absolute
            difference from the fp32 reference.
        ref_max_abs (dict): The same keys → largest absolute value of the reference, to read
            the errors against.
    """

    impl: str
    dilation: int
    forward_ms: float
    forward_backward_ms: float
    max_abs_err: dict
    ref_max_abs: dict


def _time_ms(fn: Callable[[], object], device: torch.device, iters: int, warmup: int
             ) -> float:
    """Median milliseconds of ``fn`` over ``iters`` calls after ``warmup`` untimed ones."""
    seconds = [_timed(fn, device) for _ in range(warmup + iters)][warmup:]
    return 1000.0 * _median(seconds)


def _build(impl: str, channels: int, dilation: int, weight: Tensor) -> nn.Conv2d:
    conv = nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation,
                     groups=channels, bias=False, device=weight.device)
    with torch.no_grad():
        conv.weight.copy_(weight)
    if impl == 'conv':
        return conv
    if impl == 'conv channels-last':
        return conv.to(memory_format=torch.channels_last)
    raise ValueError(f'Unknown depthwise implementation {impl!r}; known: {DEPTHWISE_IMPLS}.')


def benchmark_depthwise(*, batch: int = 2, channels: int = 1024, size: tuple[int, int] = (512, 512),
                        dilations: Sequence[int] = (6, 12, 18),
                        impls: Sequence[str] | None = None, device: str = 'cuda',
                        amp: str = 'bf16', iters: int = 5, warmup: int = 2,
                        seed: int = 0) -> list[DepthwiseTiming]:
    """Time every implementation at every dilation on the same random input and weights.

    Args:
        batch (int): N. Defaults to 2 (one MADM pass at the reference batch).
        channels (int): C. Defaults to 1024 (4 embeddings of 256, MADM's head).
        size (tuple[int, int]): (H, W). Defaults to (512, 512) (the ``s0`` fusion size).
        dilations (Sequence[int]): Defaults to the ASPP's (6, 12, 18).
        impls (Sequence[str] | None): Defaults to both on a GPU and to ``conv`` on a CPU
            (see :data:`CPU_CHANNELS_LAST_BUG`).
        device (str): Defaults to 'cuda'.
        amp (str): ``'bf16'``, ``'fp16'`` or ``'none'`` (autocast dtype). Defaults to 'bf16'.
        iters (int): Timed repetitions (median). Defaults to 5.
        warmup (int): Untimed repetitions first. Defaults to 2.
        seed (int): Seed of input, weights and output gradient. Defaults to 0.

    Returns:
        list[DepthwiseTiming]: One entry per (dilation, implementation).
    """
    dev = torch.device(device)
    if impls is None:
        impls = DEPTHWISE_IMPLS if dev.type == 'cuda' else ('conv', )
    if dev.type == 'cpu' and 'conv channels-last' in impls and amp != 'none':
        raise ValueError(CPU_CHANNELS_LAST_BUG)
    dtype = {'bf16': torch.bfloat16, 'fp16': torch.float16, 'none': None}[amp]
    g = torch.Generator().manual_seed(seed)
    # The head feeds the convolution autocast-dtype activations; the weights are fp32.
    x_cpu = torch.randn(batch, channels, *size, generator=g).to(dtype or torch.float32)
    x = x_cpu.to(dev).requires_grad_(True)
    results = []
    for dilation in dilations:
        weight = (torch.randn(channels, 1, 3, 3, generator=g) / 3).to(dev)
        grad_out = torch.randn(batch, channels, *size, generator=g).to(
            dtype or torch.float32).to(dev)
        reference = _fp32_reference(x, weight, grad_out, dilation, dtype)
        for impl in impls:
            module = _build(impl, channels, dilation, weight)

            def forward() -> Tensor:
                with torch.autocast(dev.type, dtype=dtype or torch.bfloat16,
                                    enabled=dtype is not None):
                    return module(x)

            def forward_backward() -> None:
                x.grad, module.weight.grad = None, None
                forward().backward(grad_out)

            with torch.no_grad():
                forward_ms = _time_ms(forward, dev, iters, warmup)
            forward_backward_ms = _time_ms(forward_backward, dev, iters, warmup)
            x.grad, module.weight.grad = None, None
            out = forward()
            out.backward(grad_out)
            ours = dict(out=out, grad_x=x.grad, grad_w=module.weight.grad)
            err = {k: float((ours[k].detach().float() - v).abs().max())
                   for k, v in reference.items()}
            results.append(DepthwiseTiming(
                impl=impl, dilation=dilation, forward_ms=forward_ms,
                forward_backward_ms=forward_backward_ms, max_abs_err=err,
                ref_max_abs={k: float(v.abs().max()) for k, v in reference.items()}))
            del module, out, ours
            x.grad = None
    return results


def _fp32_reference(x: Tensor, weight: Tensor, grad_out: Tensor, dilation: int,
                    dtype: torch.dtype | None) -> dict[str, Tensor]:
    """Output and gradients in fp32 from the inputs the mixed-precision paths see."""
    xr = x.detach().float().requires_grad_(True)
    wr = (weight if dtype is None else weight.to(dtype)).float().requires_grad_(True)
    with torch.autocast(x.device.type, enabled=False):
        out = F.conv2d(xr, wr, padding=dilation, dilation=dilation, groups=x.shape[1])
        out.backward(grad_out.float())
    return dict(out=out.detach(), grad_x=xr.grad, grad_w=wr.grad)


def format_depthwise_markdown(results: Sequence[DepthwiseTiming]) -> str:
    """A markdown table: one row per (dilation, implementation)."""
    lines = ['| dilation | implementation | forward ms | forward + backward ms | '
             'max abs err out / grad x / grad w (vs fp32) | reference max abs |',
             '|---|---|---|---|---|---|']
    for r in results:
        err = ' / '.join(f'{r.max_abs_err[k]:.2e}' for k in ('out', 'grad_x', 'grad_w'))
        ref = ' / '.join(f'{r.ref_max_abs[k]:.2e}' for k in ('out', 'grad_x', 'grad_w'))
        lines.append(f'| {r.dilation} | {r.impl} | {r.forward_ms:.2f} | '
                     f'{r.forward_backward_ms:.2f} | {err} | {ref} |')
    return '\n'.join(lines)


def as_dicts(results: Sequence[DepthwiseTiming]) -> list[dict]:
    """JSON-ready form of the results."""
    return [asdict(r) for r in results]
