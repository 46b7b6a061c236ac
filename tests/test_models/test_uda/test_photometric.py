"""DACS strong photometric augmentation (method.md §7)."""
import pytest
import torch

from madm.models.uda import (blur_kernel_size, color_jitter, gaussian_blur,
                             strong_augment)
from madm.models.uda.photometric import _rotate_hue


def _images(seed: int = 0) -> torch.Tensor:
    return torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(seed))


def test_probability_zero_is_identity():
    img = _images()
    out = strong_augment(img, torch.Generator().manual_seed(0), jitter_prob=0.0, blur_prob=0.0)
    assert torch.equal(out, img)


def test_probability_one_changes_and_stays_in_range():
    img = _images()
    out = strong_augment(img, torch.Generator().manual_seed(0), jitter_prob=1.0, blur_prob=1.0)
    assert out.shape == img.shape
    assert not torch.allclose(out, img)
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_deterministic_with_seeded_generator():
    img = _images()
    a = strong_augment(img, torch.Generator().manual_seed(5), jitter_prob=1.0, blur_prob=1.0)
    b = strong_augment(img, torch.Generator().manual_seed(5), jitter_prob=1.0, blur_prob=1.0)
    c = strong_augment(img, torch.Generator().manual_seed(6), jitter_prob=1.0, blur_prob=1.0)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_on_off_draw_is_shared_by_the_batch():
    # Jitter only: every image of the batch is changed or none is.
    img = _images()
    outcomes = set()
    for seed in range(8):
        out = strong_augment(img, torch.Generator().manual_seed(seed), jitter_prob=0.5, blur_prob=0.0)
        changed = [not torch.equal(out[i], img[i]) for i in range(2)]
        assert changed[0] == changed[1]
        outcomes.add(changed[0])
    assert outcomes == {True, False}  # both branches were exercised


def test_blur_kernel_size_matches_reference_rule():
    assert blur_kernel_size(512) == 51  # ceil(51.2) = 52 -> 51
    assert blur_kernel_size(50) == 5  # ceil(5.0) = 5, already odd
    assert blur_kernel_size(31) == 3  # ceil(3.1) = 4 -> 3
    assert blur_kernel_size(20) == 1  # ceil(2.0) = 2 -> 1: no blur


def test_blur_preserves_constant_image_and_impulse_mass():
    const = torch.full((1, 3, 40, 30), 0.3)
    torch.testing.assert_close(gaussian_blur(const, sigma=1.0), const)
    impulse = torch.zeros(1, 1, 40, 40)
    impulse[0, 0, 20, 20] = 1.0
    blurred = gaussian_blur(impulse, sigma=1.0)  # kernel 3x3, far from the border
    assert blurred.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert blurred[0, 0, 20, 20] < 1.0 and blurred[0, 0, 20, 21] > 0.0
    # separable, symmetric: equal weights at the 4 direct neighbours
    n = blurred[0, 0]
    assert n[19, 20] == pytest.approx(n[21, 20].item()) == pytest.approx(n[20, 19].item())


def test_hue_rotation_identity_cases_and_greys():
    img = _images()
    torch.testing.assert_close(_rotate_hue(img, torch.zeros(2)), img, atol=1e-5, rtol=0)
    torch.testing.assert_close(_rotate_hue(img, torch.ones(2)), img, atol=1e-5, rtol=0)  # a full turn
    grey = torch.full((2, 3, 4, 4), 0.4)
    torch.testing.assert_close(_rotate_hue(grey, torch.tensor([0.2, -0.13])), grey, atol=1e-5, rtol=0)
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    assert not torch.allclose(_rotate_hue(red, torch.tensor([0.2])), red, atol=1e-2)


def test_color_jitter_keeps_a_black_image_black_and_range():
    black = torch.zeros(2, 3, 5, 5)
    torch.testing.assert_close(color_jitter(black, torch.Generator().manual_seed(0)), black)
    out = color_jitter(torch.ones(2, 3, 5, 5), torch.Generator().manual_seed(0), strength=0.2)
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_strong_augment_never_waits_for_the_device():
    """Jitter (all four operations) and blur on meta, with the segmentors' CPU generator:
    draws, hue matrices and constants reach the device by non-blocking copies."""
    from madm.utils.host_sync_audit import HostSyncAudit
    img = torch.empty(2, 3, 16, 16, device='meta')
    with HostSyncAudit() as audit:
        out = strong_augment(img, torch.Generator().manual_seed(0), jitter_prob=1.0,
                             blur_prob=1.0)
    assert out.shape == img.shape and out.device.type == 'meta'
    assert audit.syncs == []
