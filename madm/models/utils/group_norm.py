"""GroupNorm that stays in the autocast dtype (issue 8).

CUDA autocast runs ``group_norm`` in float32: a bf16 activation is cast up before every norm,
the norm (and the SiLU after it in a ResNet block) runs on float32 tensors, and the next
convolution or projection casts back down. SD-1.4's UNet has 61 GroupNorms, its VAE 52 and
MADM's neck 16, and a MADM step runs the UNet several times; in an H100 profile of a
training step, GroupNorm took 93 ms and dtype casts (not all of them the norms') 71-79 ms
of 440-710 ms of GPU time (docs/benchmarks.md, "Where the time goes now"). PyTorch's
``native_group_norm`` kernels take bf16 and fp16 inputs and accumulate mean and variance in
float32, so a norm can read and write the half-precision tensor directly; only its output is
rounded. (CPU autocast has no rule for ``group_norm``: a bf16 input already stays bf16.)
"""
import torch
import torch.nn.functional as F
from torch import Tensor, nn


class AutocastGroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` that, under autocast, normalises in the autocast dtype.

    Outside autocast (and on devices without autocast, such as ``meta``), it is
    ``nn.GroupNorm`` exactly. Under autocast the input, weight and bias are cast to the
    autocast dtype and the output has that dtype; the kernel still accumulates the statistics
    in float32. Parameters, buffers and ``state_dict`` keys are those of ``nn.GroupNorm``.
    The weight and bias gradients also pass through the autocast dtype; under fp16 a
    GradScaler's overflow check catches any that overflow, as for convolution weights.
    """

    def forward(self, x: Tensor) -> Tensor:
        device_type = x.device.type
        if not (x.is_floating_point() and torch.amp.is_autocast_available(device_type)
                and torch.is_autocast_enabled(device_type)):
            return super().forward(x)
        dtype = torch.get_autocast_dtype(device_type)
        weight = None if self.weight is None else self.weight.to(dtype)
        bias = None if self.bias is None else self.bias.to(dtype)
        with torch.autocast(device_type, enabled=False):
            return F.group_norm(x.to(dtype), self.num_groups, weight, bias, self.eps)


def use_autocast_group_norm(module: nn.Module) -> int:
    """Turn every plain ``nn.GroupNorm`` inside ``module`` into an :class:`AutocastGroupNorm`.

    Each norm keeps its identity (only its class changes), so its parameters, hooks, mode and
    any other reference to it stay as they were; subclasses of ``nn.GroupNorm`` are left
    alone. Call it before building the EMA teacher, so that the teacher's copy has them too.

    Args:
        module (nn.Module): Changed in place.

    Returns:
        int: How many norms were changed.
    """
    norms = [m for m in module.modules() if type(m) is nn.GroupNorm]
    for norm in norms:
        norm.__class__ = AutocastGroupNorm
    return len(norms)


def set_group_norm_precision(module: nn.Module, precision: str) -> int:
    """Apply a module's ``group_norm_precision`` argument to its GroupNorms.

    Args:
        module (nn.Module): Changed in place.
        precision (str): ``'float32'`` keeps autocast's own rule (float32 norms, the
            reference); ``'autocast'`` calls :func:`use_autocast_group_norm`.

    Returns:
        int: How many norms were changed (0 for ``'float32'``).
    """
    if precision not in ('float32', 'autocast'):
        raise ValueError("group_norm_precision must be 'float32' or 'autocast', got "
                         f'{precision!r}.')
    return use_autocast_group_norm(module) if precision == 'autocast' else 0
