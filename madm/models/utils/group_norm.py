"""GroupNorm that stays in the autocast dtype (issue 8).

CUDA autocast runs ``group_norm`` in float32: a bf16 activation is cast up before every norm,
the norm and the SiLU after it run on float32 tensors, and the next convolution casts back
down. SD-1.4's UNet has 61 GroupNorms (its VAE 52) and a MADM step runs the UNet several
times; in an H100 profile of a training step, GroupNorm took 93 ms and dtype casts 71-79 ms
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
    """Replace every ``nn.GroupNorm`` inside ``module`` by an :class:`AutocastGroupNorm`.

    The replacements share the originals' parameter objects, so an optimiser or a copy built
    before or after sees the same weights; call it before building the EMA teacher so that the
    copy has them too.

    Args:
        module (nn.Module): Changed in place.

    Returns:
        int: How many norms were replaced.
    """
    replaced = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not nn.GroupNorm:
                continue
            norm = AutocastGroupNorm(child.num_groups, child.num_channels, child.eps,
                                     child.affine, device='meta')
            norm.weight, norm.bias = child.weight, child.bias
            norm.train(child.training)
            setattr(parent, name, norm)
            replaced += 1
    return replaced
