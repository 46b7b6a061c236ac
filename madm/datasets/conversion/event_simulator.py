"""ESIM-style event simulation and writers for DSEC's on-disk event files.

:func:`simulate_events` turns rendered frames into events the way ESIM/vid2e do
without their noise models (data-formats.md §8.2): every pixel keeps a reference
log intensity; whenever the log intensity between two frames moves ``k`` contrast
thresholds away from it, the pixel fires ``k`` events, timestamped by linear
interpolation between the two frames.

:func:`write_events_h5` and :func:`write_rectify_map` write the real DSEC formats
(data-formats.md §1.4, §1.5): ``events/{x,y,t,p}``, ``ms_to_idx`` and ``t_offset``,
each events dataset Blosc/ZSTD compressed (HDF5 filter 32001) through
``hdf5plugin``, so converters and tests read files exactly like the released ones.
"""
from typing import Literal

import h5py
import numpy as np

from madm.utils.atomic_io import atomic_path

BLOSC_FILTER_ID = 32001


def simulate_events(frames: np.ndarray, timestamps: np.ndarray, contrast_threshold: float = 0.2,
                    eps: float = 1e-3) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Simulate events from frames by log-intensity threshold crossings.

    For consecutive frames ``k-1, k`` and each pixel with ``d = L_k - ref``,
    ``n = floor(|d| / C)`` events fire at
    ``t_{k-1} + j * C / |d| * (t_k - t_{k-1})`` for ``j = 1..n`` with polarity
    ``d > 0``; then ``ref += sign(d) * n * C`` (ESIM/vid2e, data-formats.md §8.2).
    The loop runs over frames only; events are generated with array operations.

    Args:
        frames (np.ndarray): ``(T, H, W)`` intensities in [0, 1].
        timestamps (np.ndarray): ``(T,)`` int64 frame times in µs, increasing.
        contrast_threshold (float): Log-intensity step ``C`` per event.
            Defaults to 0.2.
        eps (float): Offset inside the log, so black pixels stay finite.
            Defaults to 1e-3.

    Returns:
        tuple[np.ndarray, ...]: ``x`` (uint16), ``y`` (uint16), ``t`` (int64 µs)
        and ``p`` (uint8, 1 = ON), each ``(N,)``, sorted by ``t`` (stable).
    """
    if frames.ndim != 3 or len(frames) != len(timestamps):
        raise ValueError(f'frames must be (T, H, W) with one timestamp each; got '
                         f'{frames.shape} and {len(timestamps)} timestamps')
    width = frames.shape[2]
    log_frames = np.log(frames.astype(np.float64) + eps)
    reference = log_frames[0].reshape(-1).copy()
    timestamps = np.asarray(timestamps, np.int64)
    chunks = []
    for k in range(1, len(frames)):
        diff = log_frames[k].reshape(-1) - reference
        crossings = np.floor(np.abs(diff) / contrast_threshold).astype(np.int64)
        pixels = np.flatnonzero(crossings)
        if pixels.size == 0:
            continue
        counts = crossings[pixels]
        pixel_of_event = np.repeat(pixels, counts)
        # j = 1..n within each pixel's run of events
        run_start = np.repeat(np.cumsum(counts) - counts, counts)
        j = np.arange(pixel_of_event.size) - run_start + 1
        d = diff[pixel_of_event]
        dt = timestamps[k] - timestamps[k - 1]
        t = timestamps[k - 1] + np.floor(j * contrast_threshold / np.abs(d) * dt).astype(np.int64)
        chunks.append((pixel_of_event, t, (d > 0).astype(np.uint8)))
        reference[pixels] += np.sign(diff[pixels]) * counts * contrast_threshold
    if not chunks:
        empty = np.zeros(0, np.uint16)
        return empty, empty.copy(), np.zeros(0, np.int64), np.zeros(0, np.uint8)
    pix, t, p = (np.concatenate(c) for c in zip(*chunks))
    order = np.argsort(t, kind='stable')
    pix, t, p = pix[order], t[order], p[order]
    return ((pix % width).astype(np.uint16), (pix // width).astype(np.uint16), t, p)


def compute_ms_to_idx(t_rel: np.ndarray) -> np.ndarray:
    """DSEC's ``ms_to_idx``: for each ms, the first event index with ``t >= ms * 1000``.

    Args:
        t_rel (np.ndarray): ``(N,)`` sorted timestamps relative to ``t_offset`` (µs).

    Returns:
        np.ndarray: ``(ceil(t_rel[-1] / 1000) + 1,)`` uint64 (data-formats.md §1.4).
    """
    t_rel = np.asarray(t_rel, np.int64)
    num_ms = (-(-int(t_rel[-1]) // 1000) + 1) if t_rel.size else 1
    return np.searchsorted(t_rel, np.arange(num_ms, dtype=np.int64) * 1000,
                           'left').astype(np.uint64)


def write_events_h5(path: str, x: np.ndarray, y: np.ndarray, t: np.ndarray, p: np.ndarray,
                    t_offset: int, t_offset_shape: Literal['scalar', 'array'] = 'scalar') -> None:
    """Write events in DSEC's ``events.h5`` format, atomically.

    Args:
        path (str): Output ``.../events/left/events.h5``.
        x (np.ndarray): ``(N,)`` columns (stored uint16).
        y (np.ndarray): ``(N,)`` rows (stored uint16).
        t (np.ndarray): ``(N,)`` **absolute** µs timestamps, sorted; stored as
            uint32 ``t - t_offset``.
        p (np.ndarray): ``(N,)`` polarity 0/1 (stored uint8).
        t_offset (int): Absolute time of relative ``t = 0`` (µs).
        t_offset_shape (Literal['scalar', 'array']): ``t_offset`` as a scalar
            dataset (DSEC) or shape ``(1,)`` (some third-party converters).
            Defaults to 'scalar'.
    """
    import hdf5plugin  # registers the Blosc filter with HDF5

    t_rel = np.asarray(t, np.int64) - int(t_offset)
    if t_rel.size and (t_rel.min() < 0 or t_rel.max() >= 2**32 or np.any(np.diff(t_rel) < 0)):
        raise ValueError('event timestamps must be sorted, >= t_offset and within 2**32 µs '
                         'of it (DSEC stores them as uint32)')
    compression = hdf5plugin.Blosc(cname='zstd', clevel=1, shuffle=hdf5plugin.Blosc.SHUFFLE)
    offset = np.int64(t_offset) if t_offset_shape == 'scalar' else np.array([t_offset], np.int64)
    with atomic_path(path) as tmp, h5py.File(tmp, 'w') as f:
        group = f.create_group('events')
        group.create_dataset('x', data=np.asarray(x, np.uint16), **compression)
        group.create_dataset('y', data=np.asarray(y, np.uint16), **compression)
        group.create_dataset('t', data=t_rel.astype(np.uint32), **compression)
        group.create_dataset('p', data=np.asarray(p, np.uint8), **compression)
        f.create_dataset('ms_to_idx', data=compute_ms_to_idx(t_rel), **compression)
        f.create_dataset('t_offset', data=offset)


def write_rectify_map(path: str, rectify_map: np.ndarray) -> None:
    """Write DSEC's ``rectify_map.h5`` (one dataset ``rectify_map``, (H, W, 2)), atomically.

    Args:
        path (str): Output ``.../events/left/rectify_map.h5``.
        rectify_map (np.ndarray): ``(H, W, 2)`` rectified ``(x, y)`` of each sensor pixel.
    """
    with atomic_path(path) as tmp, h5py.File(tmp, 'w') as f:
        f.create_dataset('rectify_map', data=np.asarray(rectify_map, np.float32))
