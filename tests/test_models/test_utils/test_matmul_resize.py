"""Tests for bilinear resizing as matrix products (issue 8's head lever)."""
import pytest
import torch
import torch.nn.functional as F

from madm.models.utils import bilinear_matrix, matmul_resize

# (H_in, W_in, H_out, W_out): the head's integer upsampling, non-square, downsampling,
# non-integer factors both ways, identity, a single row.
SIZES = [(8, 8, 64, 64), (4, 6, 128, 96), (64, 64, 16, 16), (7, 5, 13, 29), (13, 29, 7, 5),
         (3, 3, 3, 3), (1, 4, 5, 8)]


@pytest.mark.parametrize('align_corners', [False, True])
@pytest.mark.parametrize('h,w,out_h,out_w', SIZES)
def test_matches_interpolate_and_its_gradient(h, w, out_h, out_w, align_corners):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, h, w, generator=g, dtype=torch.float64, requires_grad=True)
    expected = F.interpolate(x, (out_h, out_w), mode='bilinear', align_corners=align_corners)
    out = matmul_resize(x, (out_h, out_w), align_corners)
    torch.testing.assert_close(out, expected)
    grad = torch.randn(expected.shape, generator=g, dtype=torch.float64)
    torch.testing.assert_close(torch.autograd.grad(out, x, grad)[0],
                               torch.autograd.grad(expected, x, grad)[0])


def test_matrix_rows_are_two_tap_convex_weights():
    m = bilinear_matrix(16, 128, dtype=torch.float64)
    assert m.shape == (128, 16)
    torch.testing.assert_close(m.sum(1), torch.ones(128, dtype=torch.float64))
    assert ((m > 0).sum(1) <= 2).all() and (m >= 0).all()
    # 8x upsampling weights are multiples of 1/16: exact in bf16.
    assert torch.equal(m.bfloat16().double(), m)
    with pytest.raises(ValueError, match='positive'):
        bilinear_matrix(0, 4)


def test_autocast_and_dtypes():
    x = torch.randn(1, 4, 8, 8)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = matmul_resize(x, (64, 64))
    assert out.dtype == torch.bfloat16
    expected = F.interpolate(x.bfloat16().float(), (64, 64), mode='bilinear')
    torch.testing.assert_close(out.float(), expected, atol=2e-2, rtol=2e-2)
    assert matmul_resize(x.double(), (16, 16)).dtype == torch.float64
