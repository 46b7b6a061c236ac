"""Event representations: hand-computed voxel/histogram/edge values and rectification."""
import numpy as np
import pytest

from madm.datasets.conversion.event_representations import (
    edge_image, histogram_image, identity_rectify_map, latest_timestamp, make_rectify_splat,
    percentile_linear, polarity_histogram, rectify_image, rectify_image_max, sensor_pixels,
    sensor_voxel_grid, voxel_grid, voxel_image)


def test_voxel_grid_bilinear_in_time_matches_hand_values():
    # t_norm = 2 * (t - 0) / 100 -> 0, 0.5, 1.5, 2 for t = 0, 25, 75, 100
    x = np.array([0, 1, 2, 3])
    y = np.array([0, 0, 1, 1])
    t = np.array([0, 25, 75, 100])
    p = np.array([1, 0, 1, 1])
    grid = voxel_grid(x, y, t, p, num_bins=3, height=2, width=4)
    expected = np.zeros((3, 2, 4), np.float32)
    expected[0, 0, 0] = 1.0
    expected[0, 0, 1], expected[1, 0, 1] = -0.5, -0.5
    expected[1, 1, 2], expected[2, 1, 2] = 0.5, 0.5
    expected[2, 1, 3] = 1.0
    np.testing.assert_allclose(grid, expected, atol=1e-6)


def test_voxel_grid_one_bin_is_net_polarity_and_float_coords_splat():
    grid = voxel_grid(np.array([1, 1, 1]), np.array([0, 0, 0]), np.array([0, 5, 9]),
                      np.array([1, 1, 0]), num_bins=1, height=1, width=3)
    np.testing.assert_array_equal(grid[0, 0], [0, 1, 0])
    splat = voxel_grid(np.array([1.25]), np.array([0.5]), np.array([0]), np.array([1]),
                       num_bins=1, height=2, width=3)[0]
    np.testing.assert_allclose(splat, [[0, 0.375, 0.125], [0, 0.375, 0.125]], atol=1e-6)


def test_polarity_histogram_and_latest_timestamp():
    x, y = np.array([0, 0, 2, 2]), np.array([0, 0, 1, 1])
    p, t = np.array([1, 0, 1, 1]), np.array([1000, 1010, 1020, 1099])
    hist = polarity_histogram(x, y, p, height=2, width=3)
    assert hist[1, 0, 0] == 1 and hist[0, 0, 0] == 1 and hist[1, 1, 2] == 2 and hist.sum() == 4
    latest = latest_timestamp(x, y, t, height=2, width=3, t_start=1000, t_end=1100)
    # (t - t_start + 1) / 100: the latest event at (0, 0) is t=1010, at (2, 1) t=1099
    np.testing.assert_allclose(latest[[0, 1], [0, 2]], [0.11, 1.0], atol=1e-6)
    assert latest.sum() == pytest.approx(1.11, abs=1e-5)


def _distorted_map(height, width):
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return np.stack([xs * 0.97 + 0.4 + 0.02 * ys, ys * 1.03 - 0.3], -1)


def test_rectify_table_equals_per_event_trilinear_voxel():
    rng = np.random.default_rng(0)
    height, width, out_height, n = 16, 20, 12, 3000
    rect = _distorted_map(height, width)
    x, y = rng.integers(0, width, n), rng.integers(0, height, n)
    t, p = np.sort(rng.integers(0, 50_000, n)), rng.integers(0, 2, n)
    splat = make_rectify_splat(rect, out_height)
    fast = rectify_image(voxel_grid(x, y, t, p, 3, height, width), splat)
    xr, yr = rect[y, x, 0].astype(np.float64), rect[y, x, 1].astype(np.float64)
    inside = (xr >= 0) & (xr <= width - 1) & (yr >= 0) & (yr <= height - 1)
    assert 0 < inside.sum() < n  # the map pushes some events out: they must be dropped
    # normalisation uses all window events: keep them, but put dropped ones off-grid
    xr, yr = np.where(inside, xr, -10.0), np.where(inside, yr, -10.0)
    slow = voxel_grid(xr, yr, t, p, 3, out_height, width)
    np.testing.assert_allclose(fast, slow, atol=1e-4)


def test_rectify_sub_pixel_shift_and_nearest_max():
    splat = make_rectify_splat(identity_rectify_map(4, 5, shift=(0.5, 0.0)))
    raw = np.zeros((1, 4, 5), np.float32)
    raw[0, 1, 1] = 2.0
    raw[0, 2, 4] = 7.0  # maps to x = 4.5 > W - 1: dropped whole
    out = rectify_image(raw, splat)[0]
    assert out[1, 1] == pytest.approx(1.0) and out[1, 2] == pytest.approx(1.0)
    assert out.sum() == pytest.approx(2.0)
    latest = np.zeros((4, 5), np.float32)
    latest[1, 1], latest[1, 2] = 0.3, 0.6  # x 1.5 -> 2 and 2.5 -> 2 (round half to even)
    assert rectify_image_max(latest, splat)[1, 2] == pytest.approx(0.6)


def test_edge_image_cmda_normalisation_by_hand():
    assert np.all(edge_image(np.zeros((3, 4), np.float32), 0) == 127)
    net = np.zeros((3, 4), np.float32)
    net[0, 0], net[2, 3] = 2.0, -1.0
    # non-zero mean 0.5, std 1.5 -> standardised +1 / -1; clip 500000/500000*1.5 = 1.5
    image = edge_image(net, 500_000)
    assert image[0, 0] == 255 and image[2, 3] == 0
    assert np.all(np.delete(image.ravel(), [0, 11]) == 127)
    # only one polarity present: event-free pixels stay gray, not black
    only_pos = np.zeros((2, 2), np.float32)
    only_pos[0, 0], only_pos[1, 1] = 1.0, 3.0
    assert edge_image(only_pos, 10)[0, 1] == 127


def test_voxel_and_histogram_images_are_uint8_with_gray_background():
    voxel = np.zeros((3, 2, 2), np.float32)
    voxel[0, 0, 0], voxel[2, 1, 1] = 4.0, -4.0
    image = voxel_image(voxel)
    assert image.shape == (2, 2, 3) and image.dtype == np.uint8
    assert image[0, 0, 0] == 255 and image[1, 1, 2] == 0 and image[0, 1, 1] == 127
    hist = np.zeros((2, 2, 2), np.float32)
    hist[1, 0, 0] = 3
    out = histogram_image(hist, np.full((2, 2), 0.5, np.float32))
    assert out[0, 0].tolist() == [0, 255, 128] and out[1, 1].tolist() == [0, 0, 128]


def _dense_reference_images(grid, num_events, latest=None):
    """The quantisers' formulas applied to every cell (the fast versions skip empty cells)."""
    e = grid[0].astype(np.float64)
    nz = e != 0
    e = np.where(nz, (e - e[nz].mean()) / (e[nz].std() + 1e-8), 0.0)
    clip = num_events / 500_000 * 1.5
    pos, neg = np.clip(e, 0, clip), np.clip(e, -clip, 0)
    pos, neg = pos / pos.max(), neg / -neg.min()
    edge = np.clip((pos + neg + 1) / 2 * 255, 0, 255).astype(np.uint8)
    mag = np.abs(grid[grid != 0])
    scale = float(max(np.percentile(mag, 99), mag.min()))
    voxel = ((np.clip(grid / scale, -1, 1) + 1) / 2 * 255).astype(np.uint8).transpose(1, 2, 0)
    counts = np.abs(grid[:2])
    cmag = counts[counts != 0]
    cscale = float(max(np.percentile(cmag, 99), cmag.min()))
    hist = np.rint(np.concatenate([np.clip(counts / cscale, 0, 1), latest[None]]) * 255)
    return edge, voxel, hist.astype(np.uint8).transpose(1, 2, 0)


def test_sparse_quantisers_equal_dense_formulas():
    rng = np.random.default_rng(1)
    grid = rng.normal(0, 3, (3, 30, 40)).astype(np.float32)
    grid[:, rng.random((30, 40)) < 0.7] = 0  # most cells without events
    grid[1, 0, 0] = 80.0  # a hot pixel above the 99th percentile: clipped
    latest = np.where(rng.random((30, 40)) < 0.3, rng.random((30, 40)), 0).astype(np.float32)
    edge, voxel, hist = _dense_reference_images(grid, 400_000, latest)
    np.testing.assert_array_equal(edge_image(grid[0], 400_000), edge)
    np.testing.assert_array_equal(voxel_image(grid), voxel)
    np.testing.assert_array_equal(histogram_image(np.abs(grid[:2]), latest), hist)
    assert voxel[0, 0, 1] == 255 and (voxel == 127).mean() > 0.5


def test_sensor_voxel_grid_equals_voxel_grid_on_sorted_events():
    rng = np.random.default_rng(2)
    height, width, n = 6, 7, 500
    x, y = rng.integers(0, width, n), rng.integers(0, height, n)
    t, p = np.sort(rng.integers(0, 10_000, n)), rng.integers(0, 2, n)
    t[-5:] = t[-1]  # several events on the last timestamp (t_norm exactly B-1)
    pix = sensor_pixels(x, y, width)
    for bins in (1, 2, 3, 5):
        np.testing.assert_allclose(
            sensor_voxel_grid(pix, t, p, bins, height * width).reshape(bins, height, width),
            voxel_grid(x, y, t, p, bins, height, width), atol=1e-5)
    assert sensor_voxel_grid(pix[:0], t[:0], p[:0], 3, height * width).shape == (3, 42)


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_percentile_linear_is_numpy_percentile_bit_for_bit(dtype):
    rng = np.random.default_rng(3)
    for n in (1, 2, 3, 99, 101, 1000, 4097):
        for q in (0.0, 50.0, 99.0, 100.0):
            values = np.abs(rng.normal(0, 1, n) * 10 ** rng.uniform(-3, 3)).astype(dtype)
            ties = np.round(values * 2).astype(dtype)  # many equal values
            for v in (values, ties):
                assert percentile_linear(v.copy(), q) == float(np.percentile(v, q)), (n, q)
