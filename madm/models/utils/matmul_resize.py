"""Bilinear resizing as two small matrix products (issue 8).

``F.interpolate``'s bilinear backward scatters every output gradient into four input pixels
with atomic adds; upsampling the DAFormer head's 256-channel embeddings 8-32x to 512x512 made
it the largest item of a full-size H100 training step (20 % of the GPU time,
docs/benchmarks.md). Bilinear resizing is separable and linear, ``Y = A_h X A_w^T`` with
sparse interpolation matrices, so forward and backward become dense matmuls.
"""
import torch
from torch import Tensor


def bilinear_matrix(in_size: int, out_size: int, align_corners: bool = False, *,
                    device: torch.device | str | None = None,
                    dtype: torch.dtype = torch.float32) -> Tensor:
    """The (out_size, in_size) matrix of 1-D bilinear interpolation, as ``F.interpolate``.

    Same source positions as PyTorch's ``upsample_bilinear2d`` with an output ``size`` (no
    ``scale_factor``): ``align_corners=False`` samples at ``(i + 0.5) * in / out - 0.5``,
    clamped at 0; ``True`` at ``i * (in - 1) / (out - 1)``. Each row holds at most two
    non-zero weights summing to 1.

    Args:
        in_size (int): Input length.
        out_size (int): Output length.
        align_corners (bool): As in ``F.interpolate``. Defaults to False.
        device (torch.device | str | None): Where to build it. Defaults to None (CPU).
        dtype (torch.dtype): Dtype of the weights. Defaults to torch.float32.

    Returns:
        Tensor: (out_size, in_size).
    """
    if in_size < 1 or out_size < 1:
        raise ValueError(f'Sizes must be positive, got in_size={in_size}, out_size={out_size}.')
    dst = torch.arange(out_size, device=device, dtype=torch.float64)
    if align_corners:
        step = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
        src = dst * step
    else:
        src = ((dst + 0.5) * (in_size / out_size) - 0.5).clamp(min=0.0)
    lower = src.floor().long().clamp(max=in_size - 1)
    upper = (lower + 1).clamp(max=in_size - 1)
    frac = src - lower
    rows = torch.arange(out_size, device=device)
    matrix = torch.zeros(out_size, in_size, device=device, dtype=torch.float64)
    matrix.index_put_((rows, lower), 1.0 - frac, accumulate=True)
    matrix.index_put_((rows, upper), frac, accumulate=True)
    return matrix.to(dtype)


def matmul_resize(x: Tensor, size: tuple[int, int], align_corners: bool = False) -> Tensor:
    """``F.interpolate(x, size, mode='bilinear', align_corners=...)`` as ``A_h @ x @ A_w^T``.

    Equal to ``F.interpolate`` up to float rounding. Under autocast the matmuls run in the
    autocast dtype; the weights of integer up- and downsampling factors that are powers of 2
    are exact in bf16 and fp16, other sizes round them to that precision.

    Args:
        x (Tensor): (..., H_in, W_in), e.g. (N, C, H_in, W_in).
        size (tuple[int, int]): (H_out, W_out).
        align_corners (bool): As in ``F.interpolate``. Defaults to False.

    Returns:
        Tensor: (..., H_out, W_out).
    """
    h, w = x.shape[-2:]
    out_h, out_w = int(size[0]), int(size[1])
    weight_dtype = x.dtype if x.is_floating_point() else torch.float32
    rows = bilinear_matrix(h, out_h, align_corners, device=x.device, dtype=weight_dtype)
    cols = bilinear_matrix(w, out_w, align_corners, device=x.device, dtype=weight_dtype)
    return torch.matmul(torch.matmul(rows, x), cols.t())
