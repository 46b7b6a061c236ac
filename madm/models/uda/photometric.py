"""DACS strong photometric augmentation of the mixed image (method.md §1 step 4, §7).

Plain torch replaces the reference's kornia ``ColorJitter`` and ``GaussianBlur2d``
(kornia is not a dependency). The jitter follows torchvision's definitions, which
differ in detail from the kornia version the reference ran (e.g. kornia's contrast
is a plain multiplication); the ranges and probabilities are the reference's. The
maths, per image ``x`` in [0, 1]:

* brightness ``x·b``; contrast ``(x − mean(gray(x)))·c + mean(gray(x))``;
  saturation ``gray(x) + s·(x − gray(x))``, with ``gray`` the ITU-R 601 luma;
  each factor drawn from ``U(1 − strength, 1 + strength)``;
* hue: a rotation of the chroma plane of the YIQ colour space by
  ``2π·h``, ``h ~ U(−strength, strength)`` (a fraction of a full hue turn,
  kornia/torchvision convention). Greys have zero chroma and stay unchanged;
* the four operations run in one random order per call, each followed by a
  clamp to [0, 1], as torchvision and kornia do;
* blur: a separable Gaussian with reflect padding, one ``σ ~ U(0.15, 1.15)``
  per call, kernel size ``ceil(0.1·size)`` made odd (51 for a 512 crop).

The jitter factors are drawn per image (kornia's default ``same_on_batch=False``);
the on/off draws and σ are drawn once per call and shared by the batch (reference,
``mtmadise.py:215-223``).

With a CPU generator (as the segmentors use) the draws, the hue matrices and the
constants are made on the host and reach the device by non-blocking copies
(:func:`madm.models.utils.to_device_async`), so the augmentation never makes the host wait
for the GPU; on a CPU the numbers are those of computing everything in place.
"""
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from madm.models.utils import to_device_async

# ITU-R 601 luma and the YIQ transform (rows: Y, I, Q).
_LUMA = (0.299, 0.587, 0.114)
_RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


def _uniform(low: float, high: float, size: int, generator: torch.Generator) -> Tensor:
    """Draw ``size`` floats from U(low, high) on the generator's device."""
    return low + (high - low) * torch.rand(size, generator=generator, device=generator.device)


def _gray(img: Tensor) -> Tensor:
    """Luma of (N, 3, H, W) images, shape (N, 1, H, W)."""
    weights = to_device_async(torch.tensor(_LUMA, dtype=img.dtype), img.device).view(1, 3, 1, 1)
    return (img * weights).sum(dim=1, keepdim=True)


def _hue_matrices(turns: Tensor, dtype: torch.dtype) -> Tensor:
    """RGB→RGB matrices (N, 3, 3) rotating the YIQ chroma by ``turns`` (N,) of a full turn."""
    turns = turns.to(dtype)
    to_yiq = torch.tensor(_RGB_TO_YIQ, dtype=dtype, device=turns.device)
    from_yiq = torch.linalg.inv(to_yiq)
    cos, sin = torch.cos(2 * math.pi * turns), torch.sin(2 * math.pi * turns)
    one, zero = torch.ones_like(cos), torch.zeros_like(cos)
    rotation = torch.stack([
        torch.stack([one, zero, zero], dim=-1),
        torch.stack([zero, cos, -sin], dim=-1),
        torch.stack([zero, sin, cos], dim=-1),
    ], dim=-2)  # (N, 3, 3)
    return from_yiq @ rotation @ to_yiq


def _rotate_hue(img: Tensor, turns: Tensor) -> Tensor:
    """Rotate the YIQ chroma of (N, 3, H, W) images by ``turns`` (N,), a host tensor."""
    matrix = to_device_async(_hue_matrices(turns, img.dtype), img.device)
    return torch.einsum('nij,njhw->nihw', matrix, img)


def color_jitter(img: Tensor, generator: torch.Generator, strength: float = 0.2) -> Tensor:
    """Jitter brightness, contrast, saturation and hue of each image, always applied.

    Args:
        img (Tensor): Images in [0, 1], shape (N, 3, H, W).
        generator (torch.Generator): Source of randomness (factors and order).
        strength (float): The ``0.2`` of the reference's
            ``ColorJitter(0.2, 0.2, 0.2, 0.2)`` (method.md §7). Defaults to 0.2.

    Returns:
        Tensor: Jittered images in [0, 1], shape (N, 3, H, W).
    """
    num = img.shape[0]
    factors = {
        'brightness': _uniform(1 - strength, 1 + strength, num, generator),
        'contrast': _uniform(1 - strength, 1 + strength, num, generator),
        'saturation': _uniform(1 - strength, 1 + strength, num, generator),
        'hue': _uniform(-strength, strength, num, generator),
    }
    order = torch.randperm(4, generator=generator, device=generator.device).tolist()
    names = list(factors)
    # The three scale factors reach the device in one copy; hue as matrices (_rotate_hue).
    scale_names = ('brightness', 'contrast', 'saturation')
    scales = to_device_async(torch.stack([factors[n] for n in scale_names]), img.device, img.dtype)
    scale = dict(zip(scale_names, scales.view(3, -1, 1, 1, 1)))
    for op in (names[i] for i in order):
        if op == 'brightness':
            img = img * scale[op]
        elif op == 'contrast':
            mean = _gray(img).mean(dim=(2, 3), keepdim=True)
            img = (img - mean) * scale[op] + mean
        elif op == 'saturation':
            gray = _gray(img)
            img = gray + (img - gray) * scale[op]
        else:
            img = _rotate_hue(img, factors['hue'])
        img = img.clamp(0.0, 1.0)
    return img


def blur_kernel_size(size: int) -> int:
    """Return the reference's blur kernel size for an image side of ``size`` pixels.

    ``ceil(0.1·size)``, minus one if even (DACS ``gaussian_blur``): 51 for 512.
    """
    k = math.ceil(0.1 * size)
    return k if k % 2 == 1 else k - 1


def gaussian_blur(img: Tensor, sigma: float) -> Tensor:
    """Blur (N, C, H, W) images with a separable Gaussian of std ``sigma``.

    The kernel is :func:`blur_kernel_size` per axis; borders are reflected
    (kornia's default), so a constant image stays constant.

    Args:
        img (Tensor): Images, shape (N, C, H, W).
        sigma (float): Gaussian standard deviation in pixels.

    Returns:
        Tensor: Blurred images, shape (N, C, H, W).
    """
    channels = img.shape[1]
    for dim, size in ((2, img.shape[2]), (3, img.shape[3])):
        k = blur_kernel_size(size)
        if k <= 1:
            continue
        x = torch.arange(k, device=img.device, dtype=img.dtype) - (k - 1) / 2
        kernel = torch.exp(-x**2 / (2 * sigma**2))
        kernel = kernel / kernel.sum()
        if dim == 2:
            weight, pad = kernel.view(1, 1, k, 1), (0, 0, k // 2, k // 2)
        else:
            weight, pad = kernel.view(1, 1, 1, k), (k // 2, k // 2, 0, 0)
        img = F.conv2d(F.pad(img, pad, mode='reflect'), weight.expand(channels, 1, -1, -1), groups=channels)
    return img


def strong_augment(img: Tensor,
                   generator: torch.Generator,
                   jitter_prob: float = 0.8,
                   jitter_strength: float = 0.2,
                   blur_prob: float = 0.5,
                   blur_sigma: tuple[float, float] = (0.15, 1.15)) -> Tensor:
    """Apply DACS's colour jitter, then Gaussian blur, to a batch of mixed images.

    Args:
        img (Tensor): Images in [0, 1], shape (N, 3, H, W).
        generator (torch.Generator): Source of every random draw.
        jitter_prob (float): Probability of APPLYING the jitter. The reference
            writes ``color_jitter_probability=0.2`` and skips the jitter with
            that probability, so 0.8 reproduces it (method.md §7; style.md
            §2.4). Defaults to 0.8.
        jitter_strength (float): Jitter range, see :func:`color_jitter`.
            Defaults to 0.2.
        blur_prob (float): Probability of applying the blur. Defaults to 0.5.
        blur_sigma (tuple[float, float]): Range of the blur σ. Defaults to
            (0.15, 1.15).

    Returns:
        Tensor: Augmented images in [0, 1], shape (N, 3, H, W).
    """
    if img.dim() != 4 or img.shape[1] != 3:
        raise ValueError(f'strong_augment expects (N, 3, H, W) images, got {tuple(img.shape)}.')
    # The two on/off draws happen every call, so the stream does not depend on earlier outcomes.
    apply_jitter, apply_blur = (torch.rand(2, generator=generator, device=generator.device) <
                                torch.tensor([jitter_prob, blur_prob], device=generator.device)).tolist()
    if apply_jitter:
        img = color_jitter(img, generator, jitter_strength)
    if apply_blur:
        sigma = float(_uniform(blur_sigma[0], blur_sigma[1], 1, generator))
        img = gaussian_blur(img, sigma)
    return img
