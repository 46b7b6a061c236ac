"""Event-to-image representations in pure, vectorised numpy.

Three image forms of the events in one time window (data-formats.md §1.7, §7):

* ``edge``: MADM's signed gray "edge form" (method.md §8.2): a 1-bin voxel grid
  (net polarity per pixel) normalised as CMDA's ``events_norm`` so that 127 means
  "no event", brighter pixels net ON and darker pixels net OFF.
* ``histogram``: per-polarity event counts (Maqueda et al. 2018) plus the
  normalised latest timestamp (EV-FlowNet), as an RGB image
  ``(OFF count, ON count, latest time)``.
* ``voxel``: a 3-bin voxel grid, bilinear in time (E2VID/ESS), mapped
  symmetrically to 0..255 (127 = no event), one bin per channel.

Rasterisation is split in two so that a converter can work per *sensor* pixel:
:func:`voxel_grid`, :func:`polarity_histogram` and :func:`latest_timestamp`
accumulate events on a grid (one ``np.bincount`` per call; integer coordinates
hit one pixel, float coordinates are splatted bilinearly as in ESS), and
:func:`rectify_image` moves a raw sensor grid into the rectified frame with a
precomputed bilinear splat table (:func:`make_rectify_splat`). Because splatting
is linear, ``rectify_image(voxel_grid(raw events))`` equals the ESS per-event
trilinear voxel grid of the rectified events, at a fraction of the cost.

The DSEC converter uses the same split on its fast path: events (integer sensor
pixels, sorted by time) are binned on flat sensor indices (:func:`sensor_pixels`,
:func:`sensor_voxel_grid`, :func:`sensor_polarity_counts`,
:func:`sensor_latest_time`), and only the sensor pixels that saw events are
splatted (:func:`splat_active`), so its cost follows the events, not the sensor.
The quantisers (:func:`edge_image`, :func:`histogram_image`, :func:`voxel_image`)
likewise compute only the cells with events; the others take their fixed
"no event" value.
"""
from dataclasses import dataclass
from typing import Literal

import numpy as np

Representation = Literal['edge', 'histogram', 'voxel']
REPRESENTATIONS: tuple[str, ...] = ('edge', 'histogram', 'voxel')

# CMDA's events_norm clips the standardised values at n_events / 500000 * 1.5
# (data-formats.md §1.7); kept as the reference's constants.
_EDGE_CLIP_EVENTS = 500_000
_EDGE_CLIP_SCALE = 1.5


def _spatial_corners(x: np.ndarray, y: np.ndarray, height: int, width: int
                     ) -> list[tuple[np.ndarray | slice, np.ndarray, np.ndarray | None]]:
    """Flat pixel indices and weights of each event's bilinear footprint.

    Integer coordinates give one corner with weight 1 (returned as None);
    float coordinates give the four neighbours weighted ``(1-|dx|)(1-|dy|)``.
    Corners outside the grid are dropped (ESS masks them the same way).

    Returns:
        list[tuple[np.ndarray | slice, np.ndarray, np.ndarray | None]]: One
        entry per corner: ``(events, flat_pixel, weight)``, where ``events``
        selects the ``M`` events whose corner lies inside the grid (a slice
        when all do) and ``flat_pixel`` and ``weight`` are ``(M,)``.
    """
    if np.issubdtype(x.dtype, np.integer) and np.issubdtype(y.dtype, np.integer):
        pix = y.astype(np.int64) * width + x
        keep = (x >= 0) & (x < width) & (y >= 0) & (y < height)
        if keep.all():
            return [(slice(None), pix, None)]
        return [(keep, pix[keep], None)]
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    corners = []
    for xl in (x0, x0 + 1):
        for yl in (y0, y0 + 1):
            w = (1.0 - np.abs(xl - x)) * (1.0 - np.abs(yl - y))
            keep = (xl >= 0) & (xl < width) & (yl >= 0) & (yl < height) & (w > 0)
            corners.append((keep, (yl * width + xl)[keep], w[keep]))
    return corners


def voxel_grid(x: np.ndarray, y: np.ndarray, t: np.ndarray, p: np.ndarray, num_bins: int,
               height: int, width: int) -> np.ndarray:
    """ESS/E2VID voxel grid: signed polarity, bilinear in time (and in space).

    Time is normalised as ESS does (data-formats.md §1.7):
    ``t_norm = (num_bins - 1) * (t - t[0]) / (t[-1] - t[0])``; each event adds
    ``2p - 1`` to its two neighbouring bins with weights ``1 - |bin - t_norm|``.
    With ``num_bins=1`` every event weighs 1, i.e. the net polarity per pixel.

    Args:
        x (np.ndarray): ``(N,)`` columns; integer (one pixel) or float (bilinear).
        y (np.ndarray): ``(N,)`` rows, same kind as ``x``.
        t (np.ndarray): ``(N,)`` timestamps (µs), sorted ascending.
        p (np.ndarray): ``(N,)`` polarity, 1 = ON, 0 = OFF.
        num_bins (int): Number of time bins ``B``.
        height (int): Grid height ``H``.
        width (int): Grid width ``W``.

    Returns:
        np.ndarray: ``(B, H, W)`` float32.
    """
    size = height * width
    if len(t) == 0:
        return np.zeros((num_bins, height, width), np.float32)
    p = np.asarray(p)
    corners = _spatial_corners(np.asarray(x), np.asarray(y), height, width)
    if num_bins == 1 and corners[0][2] is None:
        # integer fast path: ON and OFF counts from one integer bincount
        ev, pix, _ = corners[0]
        counts = np.bincount(pix * 2 + p[ev], minlength=2 * size).reshape(size, 2)
        return (counts[:, 1] - counts[:, 0]).astype(np.float32).reshape(1, height, width)
    sign = 2.0 * p.astype(np.float32) - 1.0
    t = np.asarray(t, np.int64)
    if num_bins > 1:
        span = max(int(t[-1] - t[0]), 1)
        t_norm = (t - t[0]).astype(np.float64) * ((num_bins - 1) / span)
        t_lo = np.floor(t_norm).astype(np.int64)
        w_hi = t_norm - t_lo
        time_corners = [(t_lo, sign * (1.0 - w_hi)), (t_lo + 1, sign * w_hi)]
    else:
        time_corners = [(None, sign)]
    indices, weights = [], []
    for ev, pix, w_xy in corners:
        for bins, w_t in time_corners:
            w = w_t[ev] if w_xy is None else w_t[ev] * w_xy
            if bins is None:
                indices.append(pix)
                weights.append(w)
                continue
            b = bins[ev]
            keep = b < num_bins
            indices.append(b[keep] * size + pix[keep])
            weights.append(w[keep])
    grid = np.bincount(np.concatenate(indices), np.concatenate(weights),
                       minlength=num_bins * size)
    return grid.reshape(num_bins, height, width).astype(np.float32)


def polarity_histogram(x: np.ndarray, y: np.ndarray, p: np.ndarray, height: int,
                       width: int) -> np.ndarray:
    """Per-polarity event counts (channel = polarity, as tonic's ``ToImage``).

    Args:
        x (np.ndarray): ``(N,)`` columns; integer or float (bilinear splat).
        y (np.ndarray): ``(N,)`` rows.
        p (np.ndarray): ``(N,)`` polarity in {0, 1}.
        height (int): Grid height ``H``.
        width (int): Grid width ``W``.

    Returns:
        np.ndarray: ``(2, H, W)`` float32; channel 0 = OFF, channel 1 = ON.
    """
    size = height * width
    pol = np.asarray(p, np.int64)
    corners = _spatial_corners(np.asarray(x), np.asarray(y), height, width)
    if corners[0][2] is None:  # integer coordinates: plain counts
        ev, pix, _ = corners[0]
        hist = np.bincount(pol[ev] * size + pix, minlength=2 * size)
    else:
        hist = np.bincount(np.concatenate([pol[ev] * size + pix for ev, pix, _ in corners]),
                           np.concatenate([w for *_, w in corners]), minlength=2 * size)
    return hist.reshape(2, height, width).astype(np.float32)


def latest_timestamp(x: np.ndarray, y: np.ndarray, t: np.ndarray, height: int, width: int,
                     t_start: int, t_end: int) -> np.ndarray:
    """Normalised time of the latest event per pixel (nearest pixel).

    An event at ``t`` in the window ``[t_start, t_end)`` scores
    ``(t - t_start + 1) / (t_end - t_start)`` in (0, 1], so 0 means "no event".

    Args:
        x (np.ndarray): ``(N,)`` columns (float ones are rounded).
        y (np.ndarray): ``(N,)`` rows.
        t (np.ndarray): ``(N,)`` timestamps (µs) inside ``[t_start, t_end)``.
        height (int): Grid height ``H``.
        width (int): Grid width ``W``.
        t_start (int): Window start (µs, same clock as ``t``).
        t_end (int): Window end, exclusive.

    Returns:
        np.ndarray: ``(H, W)`` float32 in [0, 1].
    """
    xi = np.rint(np.asarray(x)).astype(np.int64)
    yi = np.rint(np.asarray(y)).astype(np.int64)
    keep = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
    score = (np.asarray(t, np.int64)[keep] - t_start + 1) / max(t_end - t_start, 1)
    out = np.zeros(height * width, np.float64)
    np.maximum.at(out, yi[keep] * width + xi[keep], np.clip(score, 0.0, 1.0))
    return out.reshape(height, width).astype(np.float32)


@dataclass(frozen=True)
class RectifySplat:
    """Fixed bilinear footprint of every sensor pixel in the rectified frame.

    A corner that falls outside the output points at the extra bin ``H_out*W_out``
    with weight 0, so splatting needs no masking: it accumulates into
    ``H_out*W_out + 1`` bins and drops the last.

    Attributes:
        index (np.ndarray): ``(H*W, 4)`` intp flat target pixel per corner.
        weight (np.ndarray): ``(H*W, 4)`` float64 bilinear weights.
        nearest (np.ndarray): ``(H*W,)`` intp nearest target pixel.
        out_shape (tuple[int, int]): ``(H_out, W_out)`` of the rectified image.
    """

    index: np.ndarray
    weight: np.ndarray
    nearest: np.ndarray
    out_shape: tuple[int, int]

    @property
    def out_size(self) -> int:
        """Pixels of the rectified image (also the index of the drop bin)."""
        return self.out_shape[0] * self.out_shape[1]


def make_rectify_splat(rectify_map: np.ndarray, out_height: int | None = None) -> RectifySplat:
    """Precompute where each sensor pixel lands after rectification.

    ``rectify_map[y, x] = (x_rect, y_rect)`` (data-formats.md §1.5). A sensor
    pixel whose rectified position lies outside ``[0, W-1] x [0, H-1]`` is
    dropped whole; the kept ones are splatted bilinearly and the corners in rows
    ``>= out_height`` are cut (the DSEC-Semantic 640x440 crop, data-formats.md §0).

    Args:
        rectify_map (np.ndarray): ``(H, W, 2)`` float rectified coordinates.
        out_height (int | None): Rows kept from the top of the rectified frame.
            Defaults to ``H`` (no crop).

    Returns:
        RectifySplat: The splat table for :func:`rectify_image`.
    """
    height, width = rectify_map.shape[:2]
    out_height = height if out_height is None else out_height
    drop = out_height * width
    xr = rectify_map[..., 0].reshape(-1).astype(np.float64)
    yr = rectify_map[..., 1].reshape(-1).astype(np.float64)
    inside = (xr >= 0) & (xr <= width - 1) & (yr >= 0) & (yr <= height - 1)
    x0, y0 = np.floor(xr).astype(np.intp), np.floor(yr).astype(np.intp)
    # (H*W, 4), filled column by column: the corners of one sensor pixel are adjacent
    # in memory for the per-window gather, and no per-corner list is kept around
    index = np.empty((len(xr), 4), np.intp)
    weight = np.empty((len(xr), 4), np.float64)
    corner = 0
    for xl in (x0, x0 + 1):
        for yl in (y0, y0 + 1):
            w = (1.0 - np.abs(xl - xr)) * (1.0 - np.abs(yl - yr))
            ok = inside & (xl < width) & (yl < out_height) & (w > 0)
            index[:, corner] = np.where(ok, yl * width + xl, drop)
            weight[:, corner] = np.where(ok, w, 0.0)
            corner += 1
    xn, yn = np.rint(xr).astype(np.intp), np.rint(yr).astype(np.intp)
    nearest = np.where(inside & (yn < out_height), yn * width + xn, drop)
    return RectifySplat(index, weight, nearest, (out_height, width))


def identity_rectify_map(height: int, width: int,
                         shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """A rectify map that shifts every pixel by ``shift = (dx, dy)``.

    Returns:
        np.ndarray: ``(H, W, 2)`` float32 ``(x + dx, y + dy)``.
    """
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return np.stack([xs + shift[0], ys + shift[1]], axis=-1)


def splat_active(values: np.ndarray, active: np.ndarray, splat: RectifySplat) -> np.ndarray:
    """Splat values held by some sensor pixels into the rectified frame.

    Args:
        values (np.ndarray): ``(C, A)`` values at the sensor pixels ``active``.
        active (np.ndarray): ``(A,)`` flat sensor pixels; only pixels that saw
            events need to be listed (the others add nothing), so the cost
            follows the events, not the sensor.
        splat (RectifySplat): Table from :func:`make_rectify_splat`.

    Returns:
        np.ndarray: ``(C, H_out, W_out)`` float32.
    """
    size = splat.out_size
    # np.take on rows is a memcpy per row; fancy indexing [active] is ~6x slower here
    target = np.take(splat.index, active, axis=0).reshape(-1)   # (A*4,)
    weight = np.take(splat.weight, active, axis=0)              # (A, 4)
    out = np.empty((len(values), size), np.float32)
    for c, value in enumerate(values):
        out[c] = np.bincount(target, (weight * value[:, None]).reshape(-1),
                             minlength=size + 1)[:size]
    return out.reshape(len(values), *splat.out_shape)


def splat_active_max(values: np.ndarray, active: np.ndarray, splat: RectifySplat) -> np.ndarray:
    """Move values held by some sensor pixels to their nearest rectified pixel (max).

    Args:
        values (np.ndarray): ``(A,)`` non-negative values at the sensor pixels ``active``.
        active (np.ndarray): ``(A,)`` flat sensor pixels.
        splat (RectifySplat): Table from :func:`make_rectify_splat`.

    Returns:
        np.ndarray: ``(H_out, W_out)`` float32.
    """
    out = np.zeros(splat.out_size + 1, np.float32)
    np.maximum.at(out, np.take(splat.nearest, active), values.astype(np.float32))
    return out[:-1].reshape(splat.out_shape)


def rectify_image(raw: np.ndarray, splat: RectifySplat) -> np.ndarray:
    """Move per-sensor-pixel accumulations into the rectified (cropped) frame.

    Args:
        raw (np.ndarray): ``(C, H, W)`` values accumulated at sensor pixels
            (e.g. a voxel grid of raw integer events).
        splat (RectifySplat): Table from :func:`make_rectify_splat`.

    Returns:
        np.ndarray: ``(C, H_out, W_out)`` float32, bilinearly splatted.
    """
    flat = raw.reshape(raw.shape[0], -1)
    active = np.flatnonzero(np.any(flat != 0, axis=0))
    return splat_active(flat[:, active], active, splat)


def rectify_image_max(raw: np.ndarray, splat: RectifySplat) -> np.ndarray:
    """Move a per-sensor-pixel map to its nearest rectified pixel, keeping the max.

    Used for the latest-timestamp channel, which is not additive.

    Args:
        raw (np.ndarray): ``(H, W)`` non-negative values at sensor pixels.
        splat (RectifySplat): Table from :func:`make_rectify_splat`.

    Returns:
        np.ndarray: ``(H_out, W_out)`` float32.
    """
    flat = raw.reshape(-1)
    active = np.flatnonzero(flat > 0)
    return splat_active_max(flat[active], active, splat)


# --------------------------------------------------------------------------
# Fast path of the DSEC converter: events at integer sensor pixels, accumulated
# per sensor pixel with one np.bincount per channel, then splatted once.


def sensor_pixels(x: np.ndarray, y: np.ndarray, width: int) -> np.ndarray:
    """Flat sensor pixel ``y * width + x`` of integer events, as intp (what bincount takes)."""
    pix = np.asarray(y).astype(np.intp)
    pix *= width  # in place: one (N,) array instead of three temporaries
    pix += np.asarray(x)
    return pix


def signed_polarity(p: np.ndarray) -> np.ndarray:
    """``2p - 1``: +1.0 for ON, -1.0 for OFF events, float64 (bincount's weight type).

    Arithmetic on the uint8 polarity: ~5x faster than gathering from a (-1, 1) table.
    """
    sign = np.multiply(p, 2.0)
    sign -= 1.0
    return sign


def sensor_voxel_grid(pix: np.ndarray, t: np.ndarray, p: np.ndarray, num_bins: int,
                      size: int) -> np.ndarray:
    """:func:`voxel_grid` of integer events, on flat sensor pixels.

    Same ESS time normalisation and weights, but ``t`` must be sorted ascending
    (as DSEC stores them). Bins ``k`` and ``k + 1`` only share the events with
    ``t_norm`` in ``[k, k + 1]`` (a contiguous run, found by binary search), which give
    ``sign * (k + 1 - t_norm)`` to bin ``k`` and ``sign * (t_norm - k)`` to bin ``k + 1``:
    both follow from two per-pixel sums over the run, ``sum(sign)`` and
    ``sum(sign * t_norm)``. That is bincounts over ``2N`` events in all, as one
    bincount per bin would be, but with two (N,) weight arrays shared by all bins
    instead of a new one per bin: on the benchmark VM, first touching a fresh 8 MB
    array (1 M float64) costs ~2 ms in page faults.

    Args:
        pix (np.ndarray): ``(N,)`` flat sensor pixels (:func:`sensor_pixels`).
        t (np.ndarray): ``(N,)`` timestamps, sorted ascending (unused if
            ``num_bins == 1``).
        p (np.ndarray): ``(N,)`` polarity in {0, 1}.
        num_bins (int): Number of time bins ``B``.
        size (int): Sensor pixels ``H*W``.

    Returns:
        np.ndarray: ``(B, size)`` float64.
    """
    sign = signed_polarity(p)
    if num_bins == 1:
        return np.bincount(pix, sign, minlength=size)[None]
    if len(pix) == 0:
        return np.zeros((num_bins, size))
    grid = np.empty((num_bins, size))  # every row is written by the first run that reaches it
    t = np.asarray(t)
    span = max(int(t[-1]) - int(t[0]), 1)
    # exact: |t| < 2**53, so the float64 difference is the integer one
    t_norm = np.subtract(t, t[0], dtype=np.float64)
    t_norm *= (num_bins - 1) / span
    # run k holds t_norm in [k, k + 1); the last run also takes t_norm == B - 1 exactly
    bounds = [0, *np.searchsorted(t_norm, np.arange(1, num_bins - 1), 'left'), len(pix)]
    signed_time = np.multiply(t_norm, sign, out=t_norm)  # t_norm is not needed any more
    for k in range(num_bins - 1):
        lo, hi = bounds[k], bounds[k + 1]
        count = np.bincount(pix[lo:hi], sign[lo:hi], minlength=size)          # sum(sign)
        moment = np.bincount(pix[lo:hi], signed_time[lo:hi], minlength=size)  # sum(sign*t)
        # bin k gets (k + 1) * count - moment (added to run k - 1's share), bin k + 1
        # moment - k * count; written in place, without zeroing the grid first
        if k:
            grid[k] += (k + 1) * count - moment
            np.subtract(moment, k * count, out=grid[k + 1])
        else:
            np.subtract(count, moment, out=grid[0])
            grid[1] = moment
    return grid


def sensor_polarity_counts(pix: np.ndarray, p: np.ndarray, size: int) -> np.ndarray:
    """:func:`polarity_histogram` of integer events on flat sensor pixels.

    One integer bincount over ``2 * pix + p`` (cheaper than a count plus a weighted
    count of ON events).

    Returns:
        np.ndarray: ``(size, 2)`` int64 OFF and ON events per pixel.
    """
    index = pix * 2
    index += np.asarray(p)
    return np.bincount(index, minlength=2 * size).reshape(size, 2)


def sensor_latest_time(pix: np.ndarray, t: np.ndarray, size: int) -> np.ndarray:
    """Latest ``t`` per flat sensor pixel (``t[0]``, the earliest, where no event; ``t`` sorted).

    The max of ``t`` itself: no (N,) temporary such as ``t - t[0]``.

    Returns:
        np.ndarray: ``(size,)`` int64.
    """
    if len(pix) == 0:
        return np.zeros(size, np.int64)
    t = np.asarray(t)
    latest = np.full(size, t[0], np.int64)
    np.maximum.at(latest, pix, t)
    return latest


def edge_image(net_polarity: np.ndarray, num_events: int) -> np.ndarray:
    """MADM's signed gray "edge form" from a 1-bin voxel grid.

    CMDA's ``events_norm(enforce_no_events_zero=True)`` (data-formats.md §1.7):
    standardise the non-zero cells with their own mean and std, clip positives
    to ``[0, c]`` and negatives to ``[-c, 0]`` with ``c = num_events / 500000 * 1.5``,
    min-max each side to [0, 1] and [-1, 0], add, and map ``v`` to
    ``uint8((v + 1) / 2 * 255)``. A pixel without events is therefore 127.
    The min-max is anchored at 0 (``pos / max``, ``neg / |min|``): identical to
    the reference whenever the window has event-free pixels and both signs, and
    it keeps an empty or one-signed window gray (the plain min-max maps an
    all-zero negative side to -1, i.e. a black frame).

    Args:
        net_polarity (np.ndarray): ``(H, W)`` 1-bin voxel grid.
        num_events (int): Events in the window (sets the clip).

    Returns:
        np.ndarray: ``(H, W)`` uint8 gray image.
    """
    # Only the cells with events are computed: the others are 127 by construction,
    # and the arithmetic on the event cells is exactly the dense formula's.
    flat = net_polarity.reshape(-1)
    cells = np.flatnonzero(flat != 0)
    out = np.full(flat.size, 127, np.uint8)
    if cells.size:
        e = flat[cells].astype(np.float64)
        e = (e - e.mean()) / (e.std() + 1e-8)
        clip = num_events / _EDGE_CLIP_EVENTS * _EDGE_CLIP_SCALE
        pos = np.clip(e, 0.0, clip)
        neg = np.clip(e, -clip, 0.0)
        # Min-max of each side as the reference, anchored at 0 so that a window
        # without events (or without one polarity) stays 127 instead of turning black.
        pos = pos / pos.max() if pos.max() > 0 else pos
        neg = neg / -neg.min() if neg.min() < 0 else neg
        out[cells] = np.clip((pos + neg + 1.0) / 2.0 * 255.0, 0, 255).astype(np.uint8)
    return out.reshape(net_polarity.shape)


def percentile_linear(values: np.ndarray, percentile: float) -> float:
    """``np.percentile(values, percentile)`` (default 'linear' method), bit for bit, faster.

    numpy partitions around four ranks (first, last and the two neighbours of the
    virtual index); one partition around the lower neighbour plus a min over the
    part above it gives the same two values, then numpy's own interpolation
    formula (``_lerp``, in the values' dtype with a Python-float weight) is applied.

    Args:
        values (np.ndarray): Non-empty 1-D array without NaNs.
        percentile (float): In [0, 100].

    Returns:
        float: The percentile.
    """
    n = values.size
    virtual = (n - 1) * float(np.true_divide(percentile, 100))
    lo = min(int(np.floor(virtual)), n - 1)
    part = np.partition(values, lo)
    below, above = part[lo], (part[lo + 1:].min() if lo + 1 < n else part[lo])
    gamma = float(virtual - lo)
    diff = above - below
    return float(above - diff * (1 - gamma) if gamma >= 0.5 else below + diff * gamma)


def _robust_scale(nonzero: np.ndarray, percentile: float = 99.0) -> float:
    """``percentile`` of the magnitudes of ``nonzero`` (the non-zero values), at least their min."""
    mag = np.abs(nonzero)
    if mag.size == 0:
        return 1.0
    return float(max(percentile_linear(mag, percentile), mag.min()))


def _nonzero_channels(grid: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Per channel of ``(C, H, W)`` the flat cells that are non-zero, and all their values."""
    flat = grid.reshape(len(grid), -1)
    cells = [np.flatnonzero(channel != 0) for channel in flat]
    return cells, np.concatenate([channel[c] for channel, c in zip(flat, cells)])


def histogram_image(histogram: np.ndarray, latest: np.ndarray) -> np.ndarray:
    """Quantise counts and latest timestamps to an RGB image.

    Counts are divided by the 99th percentile of the non-zero counts (both
    polarities together) and clipped, so a few hot pixels do not darken the rest.

    Args:
        histogram (np.ndarray): ``(2, H, W)`` OFF/ON counts.
        latest (np.ndarray): ``(H, W)`` latest timestamp in [0, 1].

    Returns:
        np.ndarray: ``(H, W, 3)`` uint8, channels (OFF, ON, latest time).
    """
    # cells without events stay 0; the others get the dense formula's exact values
    cells, values = _nonzero_channels(histogram)
    scale = _robust_scale(values)
    flat = histogram.reshape(2, -1)
    out = np.zeros((flat.shape[1], 3), np.uint8)
    for c in range(2):
        count = np.clip(flat[c, cells[c]] / scale, 0.0, 1.0)
        out[cells[c], c] = np.rint(count * 255.0).astype(np.uint8)
    latest = latest.reshape(-1)
    when = np.flatnonzero(latest != 0)
    out[when, 2] = np.rint(np.clip(latest[when], 0.0, 1.0) * 255.0).astype(np.uint8)
    return out.reshape(*histogram.shape[1:], 3)


def voxel_image(voxel: np.ndarray) -> np.ndarray:
    """Map a signed 3-bin voxel grid to RGB with 127 meaning "no event".

    Values are divided by the 99th percentile of the non-zero magnitudes,
    clipped to [-1, 1] and mapped as ``uint8((v + 1) / 2 * 255)``.

    Args:
        voxel (np.ndarray): ``(3, H, W)`` voxel grid.

    Returns:
        np.ndarray: ``(H, W, 3)`` uint8, one time bin per channel (oldest first).
    """
    # zero cells map to uint8(127.5) = 127; the others get the dense formula's values
    cells, values = _nonzero_channels(voxel)
    scale = _robust_scale(values)
    flat = voxel.reshape(len(voxel), -1)
    out = np.full((flat.shape[1], len(voxel)), 127, np.uint8)
    for c, channel in enumerate(flat):
        v = np.clip(channel[cells[c]] / scale, -1.0, 1.0)
        out[cells[c], c] = ((v + 1.0) / 2.0 * 255.0).astype(np.uint8)
    return out.reshape(*voxel.shape[1:], len(voxel))
