"""Does this PyTorch's compiler get the gradient of a tapped, then upsampled output right?

With PyTorch 2.13, inductor on a CPU computes wrong gradients for a UNet compiled as one graph
when the backbone's forward hooks take a transformer block's output that the next upsampler
also reads (``madm.utils.compile_modules.UNET_BLOCK_MODULES`` avoids it). The module here is
that pattern in a few layers, so that a device and a PyTorch version can be checked in
seconds (``tools/check_inductor_gradients.py``). In the generated backward, one fused kernel
zero-fills the upsampler's input gradient and adds it to the tap's gradient before another
kernel scatters the upsampler's gradient into it: everything upstream of the tap then misses
the gradient that came through the upsampler. Whether the fault shows depends on the shapes
(on a CPU: 64 channels at 4x4 and 1280 at 16x16, SD-1.4's first upsampled tap at 512x512,
were wrong; 16 or 32 channels at 4x4 and 640 at 32x32 were right), so check the shapes you
train at. On the same CPU, PyTorch 2.14.1 got the twelve shapes tried right, 2.12.1 the three
tried (64 at 4x4, 1280 at 16x16, 128 at 4x4), and 2.13.0's CUDA build was as wrong as its CPU
build: a 2.13.0 regression, as far as checked.
"""
import copy
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@contextmanager
def _matmul_tf32(allowed: bool) -> Iterator[None]:
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


class TapThenUpsample(nn.Module):
    """A transformer block's feed-forward path, its output both returned and upsampled.

    Token LayerNorm, GEGLU feed-forward with a residual, back to an image, a 1x1 projection
    with a residual (SD's ``Transformer2DModel`` without attention), then nearest 2x
    upsampling and a 3x3 convolution (``Upsample2D``). The first output is the tapped feature.
    With any one of the LayerNorm, the feed-forward, the ``contiguous`` before the projection,
    the projection or the upsampling left out, inductor's gradients were right (PyTorch 2.13,
    CPU, 64 channels at 4x4).

    Args:
        channels (int): Channels of the image. Defaults to 64.
    """

    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.ff_in = nn.Linear(channels, 8 * channels)
        self.ff_out = nn.Linear(4 * channels, channels)
        self.proj_out = nn.Conv2d(channels, channels, 1)
        self.up_conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        n, c, h, w = x.shape
        tokens = x.permute(0, 2, 3, 1).reshape(n, h * w, c)
        value, gate = self.ff_in(self.norm(tokens)).chunk(2, dim=-1)
        tokens = self.ff_out(value * F.gelu(gate)) + tokens
        image = tokens.reshape(n, h, w, c).permute(0, 3, 1, 2).contiguous()
        tap = self.proj_out(image) + x
        return tap, self.up_conv(F.interpolate(tap, scale_factor=2.0, mode='nearest'))


def compiled_gradient_error(backend: str = 'inductor',
                            device: str | torch.device = 'cpu',
                            channels: int = 64,
                            size: int = 4,
                            seed: int = 0) -> dict[str, float]:
    """Each parameter's gradient, compiled against eager, of a loss on both outputs.

    Runs in fp32, with TF32 off on a GPU, so that a right compiler differs from eager by
    rounding only.

    Args:
        backend (str): ``torch.compile``'s backend. Defaults to ``'inductor'``.
        device (str | torch.device): Where to run. Defaults to ``'cpu'``.
        channels (int): See :class:`TapThenUpsample`. Defaults to 64.
        size (int): Height and width of the input (batch 2). Defaults to 4.
        seed (int): Seeds weights and input. Defaults to 0.

    Returns:
        dict[str, float]: parameter name → ``‖g_compiled − g_eager‖ / ‖g_eager‖``: about 1e-7
        where the compiler is right; where it has the fault, 0.9-1.0 (with PyTorch 2.13
        on a CPU) for the parameters before the upsampler; the two after it stay right.
    """
    generator = torch.Generator().manual_seed(seed)
    eager = TapThenUpsample(channels)
    with torch.no_grad():  # seeded without touching the global RNGs
        for parameter in eager.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    eager = eager.to(device)
    compiled = copy.deepcopy(eager)
    # Every instance shares one forward, compiled once per shape: checking more shapes in one
    # process than dynamo's default limit of 8 would compare eager with eager.
    compiled.compile(backend=backend, dynamic=False, recompile_limit=256)
    x = torch.randn(2, channels, size, size, generator=generator).to(device)

    def gradients(model: nn.Module) -> dict[str, Tensor]:
        tap, upsampled = model(x)
        # Both outputs feed the loss, as the tap feeds the head and the upsampled path the
        # deeper taps.
        ((tap**2).mean() + 2 * (upsampled**2).mean()).backward()
        return {name: p.grad.detach().clone() for name, p in model.named_parameters()}

    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False), \
            _matmul_tf32(False):
        reference, other = gradients(eager), gradients(compiled)
    return {name: float((other[name] - g).norm() / g.norm()) for name, g in reference.items()}
