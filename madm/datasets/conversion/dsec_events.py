"""DSEC events → MADM event frames, one PNG per semantic label.

Reads the official DSEC layout (data-formats.md §1.3–§1.5)::

    <events_root>/<sequence>/events/left/events.h5       # Blosc/ZSTD (filter 32001)
    <events_root>/<sequence>/events/left/rectify_map.h5
    <semantic_root>/<sequence>/<sequence>_semantic_timestamps.txt
        (or <sequence>/timestamps.txt, <sequence>/semantic/timestamps.txt)
    <semantic_root>/<sequence>/11classes/000000.png ...   # optional; count checked

Only DSEC-Semantic's labelled recordings have timestamps (8 of the 41 train
sequences): without an explicit sequence list the others are skipped and logged. Where
the label PNGs are unpacked beside the timestamps, their number must equal the number
of timestamps (ESS asserts the same). It then writes, for every label index ``i >= 1``,
the events of ``[ts[i-1], ts[i])`` (the 50 ms before label ``i``), rectified with
``rectify_map`` (sub-pixel, events mapped outside the sensor dropped), rendered by
:mod:`.event_representations` and cut to the 640x440 label frame (rows ``[0, 440)``)::

    <out_root>/<sequence>/<i:06d>.png

With ``representation='edge'`` these are MADM's ``69mask_{train,test}_edges``
images (data-formats.md §1.7). Events are read one window at a time through
``ms_to_idx``, so memory is bounded by the largest window, never the recording. By
default the stages overlap: a forked reader process decodes the next window
(:mod:`.event_prefetch`) and a writer thread encodes and writes the previous frame while the
current one renders.

Two backends render the same representations: ``numpy`` (default) accumulates
events per sensor pixel (one ``np.bincount`` per channel) and splats only the
sensor pixels that saw events through a precomputed rectification table; ``tonic``
(optional, GPL-3.0, ``pip install -e '.[tonic]'``; it lives
in ``data_converters/tonic_backend.py``, outside the madm package) rounds rectified
coordinates to pixels and uses tonic's ``ToImage`` / ``ToVoxelGrid``. On integer rectify
maps the two agree before quantisation. Both read only the event fields their
representation needs (:data:`EVENT_COLUMNS`) and share quantisation and PNG writing.
"""
import collections
import math
import os
import os.path as osp
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import cv2
import h5py
import numpy as np
from mmengine.logging import print_log

from madm.utils.atomic_io import atomic_write_image
from madm.utils.paths import MissingDataError, list_files, require_dir
from .event_prefetch import read_windows
from .event_representations import (Representation, edge_image, histogram_image,
                                    make_rectify_splat, sensor_latest_time, sensor_pixels,
                                    sensor_polarity_counts, sensor_voxel_grid, splat_active,
                                    splat_active_max, voxel_image)

Backend = str  # 'numpy', or 'tonic' once data_converters/tonic_backend.py is imported
SENSOR_HEIGHT, SENSOR_WIDTH = 480, 640
LABEL_HEIGHT = 440  # DSEC-Semantic labels drop the bottom 40 sensor rows
#: Event fields each representation needs: the edge form never looks at time, so its
#: reader skips decoding ``t`` (4 of the 9 bytes per event) beyond the window bounds.
EVENT_COLUMNS: dict[str, str] = {'edge': 'xyp', 'histogram': 'xytp', 'voxel': 'xytp'}
#: PNG settings of the event frames: no per-row filter. Frames are mostly one flat value (127
#: or 0), which zlib's run matching packs as well unfiltered; on the benchmark VM this cut
#: encoding a 640x440 histogram or voxel frame from 2.6 to 2.2 ms and its file by 8-11 %
#: (docs/benchmarks.md). Lossless either way: the decoded pixels are the same.
EVENT_PNG_PARAMS = (cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE)
EVENTS_FILE = osp.join('events', 'left', 'events.h5')
RECTIFY_FILE = osp.join('events', 'left', 'rectify_map.h5')
_HDF5PLUGIN_FIX = ('DSEC events.h5 is compressed with Blosc/ZSTD (HDF5 filter 32001); '
                   'install the filter plugin with `pip install hdf5plugin` (madm imports it '
                   'before reading).')
_DSEC_HOWTO = ('Download and unzip the DSEC event archives (train_events.zip / test_events.zip '
               'from https://dsec.ifi.uzh.ch) so that <events_root>/<sequence>/events/left/ '
               'holds events.h5 and rectify_map.h5.')
_SEMANTIC_HOWTO = ('Unzip DSEC-Semantic (train/test_semantic_segmentation.zip) and pass its '
                   'split folder as --semantic-root.')


def _search_sorted(t_rel: np.ndarray, value: int) -> int:
    """``np.searchsorted(t_rel, value, 'left')`` without casting ``t_rel`` (uint32 in DSEC).

    A Python int makes numpy cast the whole array to int64 first (~25x slower at 1 M
    events); a value of the array's own dtype does not, so out-of-range values are
    answered here.
    """
    if np.issubdtype(t_rel.dtype, np.integer):
        info = np.iinfo(t_rel.dtype)
        if value > info.max:
            return len(t_rel)
        if value <= info.min:
            return 0
        value = t_rel.dtype.type(value)
    return int(np.searchsorted(t_rel, value, 'left'))


def _absolute_time(t_rel: np.ndarray, t_offset: int, out: np.ndarray | None = None
                   ) -> np.ndarray:
    """``t_rel + t_offset`` as int64 (relative ``t`` is uint32 on disk), in one pass."""
    return np.add(t_rel, t_offset, out=out, dtype=np.int64, casting='unsafe')


class DSECEventReader:
    """Time-window reader over one DSEC ``events.h5`` (DSEC ``EventSlicer`` contract).

    Only ``ms_to_idx`` and ``t_offset`` are loaded at open; :meth:`read` decodes
    one ``[t_start, t_end)`` window. Use as a context manager.

    Args:
        path (str): Path of ``events.h5``.

    Raises:
        MissingDataError: If the file does not exist.
        RuntimeError: If the Blosc filter is unavailable (names the fix).
    """

    def __init__(self, path: str) -> None:
        if not osp.isfile(path):
            raise MissingDataError(f'DSEC events file not found: {path!r}. {_DSEC_HOWTO}')
        plugin_error = None
        try:
            import hdf5plugin  # noqa: F401  registers filter 32001 with HDF5
        except ImportError as e:
            plugin_error = e
        self.path = path
        self.file = h5py.File(path, 'r')
        self.events = {k: self.file['events'][k] for k in 'xytp'}
        self.num_events = len(self.events['t'])
        try:
            # decoding fails here, not mid-conversion, when the Blosc filter is missing
            self.ms_to_idx = np.asarray(self.file['ms_to_idx'], np.int64)
            for key in 'xytp':
                self.events[key][:1]
        except OSError as e:
            self.close()
            reason = f' (import hdf5plugin failed: {plugin_error})' if plugin_error else ''
            raise RuntimeError(f'Cannot read events from {path!r}: {e}{reason}. '
                               f'{_HDF5PLUGIN_FIX}') from e
        self.t_offset = (int(np.asarray(self.file['t_offset'][()]).reshape(-1)[0])
                         if 't_offset' in self.file else 0)

    def _ms_index(self, ms: int) -> int:
        """Index of the first event at relative time ``>= ms * 1000``."""
        return self.num_events if ms >= len(self.ms_to_idx) else int(self.ms_to_idx[ms])

    def _first_index(self, t_rel: int) -> int:
        """Index of the first event at relative time ``>= t_rel``, decoding only its ms of ``t``."""
        ms = t_rel // 1000
        lo = self._ms_index(ms)
        if t_rel == ms * 1000:
            return lo
        hi = self._ms_index(ms + 1)
        return lo + _search_sorted(np.asarray(self.events['t'][lo:hi]), t_rel)

    def max_window_events(self, windows: Sequence[tuple[int, int]]) -> int:
        """Upper bound on the events :meth:`read` returns for any of ``windows``.

        From ``ms_to_idx`` alone (the whole milliseconds around each window), so nothing
        is decoded.
        """
        most = 0
        for t_start, t_end in windows:
            t0, t1 = t_start - self.t_offset, t_end - self.t_offset
            ms0 = math.floor(t0 / 1000)
            if t0 >= 0 and ms0 < len(self.ms_to_idx):
                most = max(most, self._ms_index(math.ceil(t1 / 1000)) - self._ms_index(ms0))
        return most

    def _locate(self, t_start: int, t_end: int, with_time: bool
                ) -> tuple[int, int, np.ndarray | None] | None:
        """Index range ``[a, b)`` of the window's events, and their relative ``t`` as stored.

        ``t`` is decoded only ``with_time`` (else None); None when the window starts
        before the recording or after its end.
        """
        t0, t1 = t_start - self.t_offset, t_end - self.t_offset
        ms0 = math.floor(t0 / 1000)
        if t0 < 0 or ms0 >= len(self.ms_to_idx):
            return None
        if not with_time:
            return self._first_index(t0), self._first_index(t1), None
        i0 = self._ms_index(ms0)
        # searched as stored (uint32): no int64 copy of the window's times
        t = np.asarray(self.events['t'][i0:self._ms_index(math.ceil(t1 / 1000))])
        a, b = _search_sorted(t, t0), _search_sorted(t, t1)
        return i0 + a, i0 + b, t[a:b]

    def read(self, t_start: int, t_end: int,
             columns: str = 'xytp') -> dict[str, np.ndarray] | None:
        """Events with absolute time in ``[t_start, t_end)``.

        Args:
            t_start (int): Window start, absolute µs (same clock as the
                semantic timestamps).
            t_end (int): Window end, absolute µs, exclusive.
            columns (str): Fields to decode, a subset of ``'xytp'``. Without
                ``'t'`` only the two 1 ms runs of ``t`` at the window bounds are
                decoded. Defaults to all four.

        Returns:
            dict[str, np.ndarray] | None: The requested fields, each ``(N,)`` as
            stored (``x``, ``y`` uint16, ``p`` uint8) except ``t``, absolute
            int64 µs; None when the window starts before the recording or
            after its end.
        """
        window = self._locate(t_start, t_end, 't' in columns)
        if window is None:
            return None
        a, b, t = window
        return {key: _absolute_time(t, self.t_offset) if key == 't'
                else np.asarray(self.events[key][a:b]) for key in 'xytp' if key in columns}

    def read_into(self, t_start: int, t_end: int, out: dict[str, np.ndarray],
                  columns: str = 'xytp') -> int | None:
        """:meth:`read`, decoding straight into caller-owned arrays (no copy, no allocation).

        Args:
            t_start (int): Window start, absolute µs.
            t_end (int): Window end, absolute µs, exclusive.
            out (dict[str, np.ndarray]): One C-contiguous array per field of
                ``columns``, with :meth:`read`'s dtypes and room for the window
                (:meth:`max_window_events`); the events go to ``out[key][:count]``.
            columns (str): Fields to decode. Defaults to all four.

        Returns:
            int | None: ``count``, or None as :meth:`read`.
        """
        window = self._locate(t_start, t_end, 't' in columns)
        if window is None:
            return None
        a, b, t = window
        count = b - a
        for key in columns:
            if len(out[key]) < count:
                raise ValueError(f'{count} events in [{t_start}, {t_end}) do not fit the '
                                 f'{len(out[key])}-event buffer for {key!r}')
            if key == 't':
                _absolute_time(t, self.t_offset, out['t'][:count])
            elif count:
                self.events[key].read_direct(out[key], np.s_[a:b], np.s_[:count])
        return count

    def close(self) -> None:
        """Close the HDF5 file."""
        self.file.close()

    def __enter__(self) -> 'DSECEventReader':
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load_rectify_map(path: str) -> np.ndarray:
    """Read ``rectify_map.h5``.

    Returns:
        np.ndarray: ``(480, 640, 2)`` float32 rectified ``(x, y)`` per sensor pixel.
    """
    if not osp.isfile(path):
        raise MissingDataError(f'DSEC rectify map not found: {path!r}. {_DSEC_HOWTO}')
    with h5py.File(path, 'r') as f:
        rectify_map = np.asarray(f['rectify_map'], np.float32)
    if rectify_map.shape != (SENSOR_HEIGHT, SENSOR_WIDTH, 2):
        raise ValueError(f'{path}: rectify_map has shape {rectify_map.shape}, expected '
                         f'({SENSOR_HEIGHT}, {SENSOR_WIDTH}, 2)')
    return rectify_map


def _timestamps_candidates(semantic_root: str, sequence: str) -> list[str]:
    """Where DSEC-Semantic unpacks keep a sequence's label timestamps (data-formats.md §1.3)."""
    seq_dir = osp.join(semantic_root, sequence)
    return [osp.join(seq_dir, f'{sequence}_semantic_timestamps.txt'),
            osp.join(seq_dir, 'semantic', 'timestamps.txt'),
            osp.join(seq_dir, 'timestamps.txt')]


def find_semantic_timestamps(semantic_root: str, sequence: str) -> str:
    """Locate a sequence's semantic-label timestamps file (data-formats.md §1.3).

    Args:
        semantic_root (str): DSEC-Semantic split folder holding ``<sequence>/``.
        sequence (str): Sequence name, e.g. ``zurich_city_13_a``.

    Returns:
        str: Path of the first existing candidate.

    Raises:
        MissingDataError: If there is none (names every path looked at).
    """
    candidates = _timestamps_candidates(semantic_root, sequence)
    for path in candidates:
        if osp.isfile(path):
            return path
    raise MissingDataError(f'No semantic timestamps file for {sequence!r}; looked for '
                           f'{", ".join(candidates)}. {_SEMANTIC_HOWTO}')


def find_semantic_label_dirs(semantic_root: str, sequence: str) -> list[str]:
    """Label folders of a sequence beside its timestamps (data-formats.md §1.3, loader advice).

    Looks for ``11classes/`` and ``19classes/`` under ``<sequence>/``,
    ``<sequence>/semantic/`` and ``<sequence>/semantic/left/``; a ``data/`` subfolder,
    where present, is the one holding the PNGs (ESS layout).

    Args:
        semantic_root (str): DSEC-Semantic split folder holding ``<sequence>/``.
        sequence (str): Sequence name.

    Returns:
        list[str]: The existing label folders; empty when the labels were not unpacked
        there (only the timestamps are needed to render frames).
    """
    seq_dir = osp.join(semantic_root, sequence)
    found = []
    for base in (seq_dir, osp.join(seq_dir, 'semantic'), osp.join(seq_dir, 'semantic', 'left')):
        for classes in ('11classes', '19classes'):
            label_dir = osp.join(base, classes)
            if osp.isdir(osp.join(label_dir, 'data')):
                found.append(osp.join(label_dir, 'data'))
            elif osp.isdir(label_dir):
                found.append(label_dir)
    return found


def check_label_count(timestamps_path: str, num_timestamps: int,
                      label_dirs: Sequence[str]) -> None:
    """Check one timestamp per label PNG, as ESS asserts (data-formats.md §1.3).

    A mismatch means the timestamps and labels come from different unpacks or
    sequences, so frame ``i`` would not be the input of label ``i``.

    Args:
        timestamps_path (str): The timestamps file (for the message).
        num_timestamps (int): Its number of timestamps.
        label_dirs (Sequence[str]): Label folders (:func:`find_semantic_label_dirs`).

    Raises:
        ValueError: On the first folder whose PNG count differs, naming both counts and
            both paths.
    """
    for label_dir in label_dirs:
        num_labels = len(list_files(label_dir, '.png'))
        if num_labels != num_timestamps:
            raise ValueError(
                f'DSEC-Semantic timestamps and labels disagree: {timestamps_path!r} has '
                f'{num_timestamps} timestamps but {label_dir!r} holds {num_labels} label PNGs '
                '(one timestamp per label is expected). Re-unzip the sequence from '
                'train/test_semantic_segmentation.zip so both come from the same archive.')


def load_timestamps(path: str) -> np.ndarray:
    """One int64 µs timestamp per line (``#`` comments allowed).

    Returns:
        np.ndarray: ``(L,)`` int64.
    """
    return np.atleast_1d(np.loadtxt(path, dtype=np.int64, comments='#'))


class EventRenderer:
    """Base of the event renderers: ``accumulate`` float grids, then quantise to a PNG image.

    Subclasses set ``self.representation`` and implement :meth:`accumulate`; ``columns``
    names the event fields the converter reads for them (``'xytp'`` unless a subclass
    needs fewer).
    """

    representation: Representation
    columns: str = 'xytp'

    def accumulate(self, events: dict[str, np.ndarray], t_start: int,
                   t_end: int) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError

    def __call__(self, events: dict[str, np.ndarray], t_start: int, t_end: int) -> np.ndarray:
        """Render a window to ``(440, 640)`` (edge) or ``(440, 640, 3)`` uint8."""
        grid, latest = self.accumulate(events, t_start, t_end)
        return quantise(self.representation, grid, latest, len(events['x']))


class NumpyEventRenderer(EventRenderer):
    """Render a window with the numpy representations (sub-pixel rectification).

    Events are accumulated on the 480x640 sensor grid at their raw integer
    pixels (one ``np.bincount`` per channel), then only the sensor pixels that
    saw events are moved to the rectified, cropped frame by a precomputed
    bilinear splat (linear, so equal to splatting every event). The latest
    timestamp is not additive: it goes to the nearest rectified pixel (max).

    Args:
        rectify_map (np.ndarray): ``(480, 640, 2)`` rectification map.
        representation (Representation): 'edge', 'histogram' or 'voxel'.
        out_height (int): Rows kept after rectification. Defaults to 440.
    """

    def __init__(self, rectify_map: np.ndarray, representation: Representation,
                 out_height: int = LABEL_HEIGHT) -> None:
        self.splat = make_rectify_splat(rectify_map, out_height)
        self.representation = representation
        self.columns = EVENT_COLUMNS[representation]
        self.sensor_shape = rectify_map.shape[:2]

    def accumulate(self, events: dict[str, np.ndarray], t_start: int,
                   t_end: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Float grids before quantisation: voxel / histogram (+ latest time).

        ``events`` must be sorted by time, as DSEC stores them (the voxel grid
        relies on it); ``t`` may be absent for 'edge'.

        Returns:
            tuple[np.ndarray, np.ndarray | None]: ``(C, 440, 640)`` voxel grid
            (C = 1 edge, 3 voxel) or polarity histogram (C = 2), and the
            ``(440, 640)`` latest-timestamp map for 'histogram' (else None).
        """
        height, width = self.sensor_shape
        size = height * width
        pix = sensor_pixels(events['x'], events['y'], width)
        if self.representation == 'histogram':
            counts = sensor_polarity_counts(pix, events['p'], size)  # (size, 2) OFF, ON
            active = np.flatnonzero(counts[:, 0] + counts[:, 1])
            hist = splat_active(np.take(counts, active, axis=0).T, active, self.splat)
            if len(pix) == 0:
                return hist, np.zeros(self.splat.out_shape, np.float32)
            # latest time -> (t - t_start + 1) / window in (0, 1]
            latest = sensor_latest_time(pix, events['t'], size)[active]
            latest -= t_start - 1  # int64, exact: the same numerator as before
            score = np.clip(latest / max(t_end - t_start, 1), 0.0, 1.0)
            return hist, splat_active_max(score, active, self.splat)
        bins = 1 if self.representation == 'edge' else 3
        grid = sensor_voxel_grid(pix, events.get('t'), events['p'], bins, size)
        active = np.flatnonzero(np.any(grid != 0, axis=0))
        return splat_active(np.take(grid, active, axis=1), active, self.splat), None


def quantise(representation: Representation, grid: np.ndarray, latest: np.ndarray | None,
              num_events: int) -> np.ndarray:
    if representation == 'edge':
        return edge_image(grid[0], num_events)
    if representation == 'histogram':
        return histogram_image(grid, latest)
    return voxel_image(grid)


#: Renderer classes by backend name. The optional GPL-3.0 ``tonic`` backend is not part of
#: the madm package: ``data_converters/tonic_backend.py`` registers it when imported.
RENDERER_BACKENDS: dict[str, Callable] = {'numpy': NumpyEventRenderer}


def build_renderer(rectify_map: np.ndarray, representation: Representation,
                   backend: Backend = 'numpy'):
    """Renderer for ``backend``: 'numpy', or a backend registered in :data:`RENDERER_BACKENDS`."""
    if representation not in ('edge', 'histogram', 'voxel'):
        raise ValueError(f'unknown representation {representation!r}; '
                         f"choose 'edge', 'histogram' or 'voxel'")
    if backend not in RENDERER_BACKENDS:
        if backend == 'tonic':
            raise ValueError('The tonic backend (GPL-3.0) is an optional extra outside the madm '
                             'package: run `python data_converters/dsec_events.py --backend tonic` '
                             "(needs `pip install -e '.[tonic]'` in the checkout), or import "
                             'data_converters/tonic_backend.py first.')
        raise ValueError(f'unknown backend {backend!r}; available: {sorted(RENDERER_BACKENDS)}')
    return RENDERER_BACKENDS[backend](rectify_map, representation)


@dataclass
class EventConversionSummary:
    """What a conversion did.

    Attributes:
        sequences (list[str]): Sequences processed.
        written (int): PNGs written.
        skipped (int): PNGs that already existed (resume).
        empty_windows (int): Windows outside the recording (no events; written
            as blank frames so every label has an input).
        events (int): Events rendered.
        seconds (float): Wall time.
        peak_window_events (int): Largest number of events held at once.
    """

    sequences: list[str] = field(default_factory=list)
    written: int = 0
    skipped: int = 0
    empty_windows: int = 0
    events: int = 0
    seconds: float = 0.0
    peak_window_events: int = 0


def label_windows(timestamps: np.ndarray) -> list[tuple[int, int, int]]:
    """``(i, ts[i-1], ts[i])`` for every label index ``i >= 1`` (data-formats.md §1.7)."""
    return [(i, int(timestamps[i - 1]), int(timestamps[i])) for i in range(1, len(timestamps))]


class _FrameWriter:
    """Write event frames atomically, in a background thread when ``threaded``.

    OpenCV's PNG encoder and file writes release the GIL, so the thread encodes frame k
    while frame k + 1 renders (measured at 0.2 M events per window: 10-17 % less time per
    window for histogram and voxel frames, no change for edge; docs/benchmarks.md). At most
    ``max_pending`` frames wait, so memory stays a few frames; the first failed write is
    raised on the next :meth:`write` or on exit, after the frames before it are written.
    """

    def __init__(self, threaded: bool, max_pending: int = 2) -> None:
        self.pool = (ThreadPoolExecutor(1, thread_name_prefix='dsec-frame-writer')
                     if threaded else None)
        self.pending: collections.deque[Future] = collections.deque()
        self.max_pending = max_pending

    def write(self, path: str, frame: np.ndarray) -> None:
        if self.pool is None:
            atomic_write_image(path, frame, EVENT_PNG_PARAMS)
            return
        self.pending.append(self.pool.submit(atomic_write_image, path, frame, EVENT_PNG_PARAMS))
        while len(self.pending) > self.max_pending:
            self.pending.popleft().result()

    def __enter__(self) -> '_FrameWriter':
        return self

    def __exit__(self, *exc) -> None:
        try:
            while self.pending:  # on an error too: frames already rendered are kept
                self.pending.popleft().result()
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True)


def convert_sequence(events_path: str, rectify_map_path: str, timestamps: np.ndarray,
                     out_dir: str, representation: Representation = 'edge',
                     backend: Backend = 'numpy',
                     progress: Callable[[], None] | None = None,
                     summary: EventConversionSummary | None = None,
                     pipelined: bool = True) -> EventConversionSummary:
    """Convert one sequence: a PNG per label index ``i >= 1``, skipping existing ones.

    Args:
        events_path (str): ``events.h5`` of the sequence.
        rectify_map_path (str): ``rectify_map.h5`` of the sequence.
        timestamps (np.ndarray): ``(L,)`` absolute µs semantic-label timestamps.
        out_dir (str): Output folder; files are ``<i:06d>.png``.
        representation (Representation): 'edge' (MADM), 'histogram' or 'voxel'.
            Defaults to 'edge'.
        backend (Backend): 'numpy' or 'tonic'. Defaults to 'numpy'.
        progress (Callable[[], None] | None): Called once per label window.
        summary (EventConversionSummary | None): Accumulator to update. Defaults to a
            new one.
        pipelined (bool): Overlap the stages: decode the next window in a reader process
            (:func:`.event_prefetch.read_windows`) and encode + write the previous frame
            in a writer thread while this one renders. False runs them one after another
            in this thread. Same files either way. Defaults to True.

    Returns:
        EventConversionSummary: ``summary``, updated.
    """
    summary = summary if summary is not None else EventConversionSummary()
    start = time.perf_counter()
    windows = label_windows(timestamps)
    todo = [w for w in windows if not osp.isfile(osp.join(out_dir, f'{w[0]:06d}.png'))]
    summary.skipped += len(windows) - len(todo)
    if progress is not None:
        for _ in range(len(windows) - len(todo)):
            progress()
    if todo:
        renderer = build_renderer(load_rectify_map(rectify_map_path), representation, backend)
        columns = getattr(renderer, 'columns', 'xytp')
        windows = read_windows(events_path, [(t_start, t_end) for _, t_start, t_end in todo],
                               columns, prefetch=pipelined)
        # The reader forks when the first window is requested, before the writer starts its
        # thread on the first write: a process forked while another thread runs can inherit
        # a held lock.
        with _FrameWriter(threaded=pipelined) as writer:
            for (index, t_start, t_end), events in zip(todo, windows):
                if events is None:
                    summary.empty_windows += 1
                    events = dict(x=np.zeros(0, np.int64), y=np.zeros(0, np.int64),
                                  t=np.zeros(0, np.int64), p=np.zeros(0, np.uint8))
                summary.events += len(events['x'])
                summary.peak_window_events = max(summary.peak_window_events, len(events['x']))
                writer.write(osp.join(out_dir, f'{index:06d}.png'),
                             renderer(events, t_start, t_end))
                summary.written += 1
                if progress is not None:
                    progress()
    summary.seconds += time.perf_counter() - start
    return summary


def find_sequences(events_root: str, sequences: Sequence[str] | None = None) -> list[str]:
    """Sequence folders under ``events_root`` that hold ``events/left/events.h5``.

    Args:
        events_root (str): DSEC split folder (``.../train`` or ``.../test``).
        sequences (Sequence[str] | None): Keep only these; each must exist.

    Returns:
        list[str]: Sorted sequence names.
    """
    require_dir(events_root, 'DSEC events root', _DSEC_HOWTO)
    found = sorted(d for d in os.listdir(events_root)
                   if osp.isfile(osp.join(events_root, d, EVENTS_FILE)))
    if sequences:
        missing = [s for s in sequences if s not in found]
        if missing:
            raise MissingDataError(
                'Requested sequences have no ' + EVENTS_FILE + ': ' + ', '.join(
                    osp.join(events_root, s, EVENTS_FILE) for s in missing) + f'. {_DSEC_HOWTO}')
        return list(sequences)
    if not found:
        raise MissingDataError(f'No <sequence>/{EVENTS_FILE} under {events_root!r}. '
                               f'{_DSEC_HOWTO}')
    return found


def _labelled_sequences(events_root: str, semantic_root: str, names: Sequence[str]
                        ) -> tuple[list[str], dict[str, str]]:
    """The sequences of ``names`` with semantic timestamps, and their timestamps files.

    DSEC-Semantic labels only some recordings (8 of DSEC's 41 train sequences), so the
    others are skipped and logged; none at all is an error.
    """
    stamp_paths, unlabelled = {}, []
    for name in names:
        path = next((p for p in _timestamps_candidates(semantic_root, name) if osp.isfile(p)),
                    None)
        if path is None:
            unlabelled.append(name)
        else:
            stamp_paths[name] = path
    if not stamp_paths:
        looked = ', '.join(_timestamps_candidates(semantic_root, names[0]))
        raise MissingDataError(
            f'None of the {len(names)} sequences with events under {events_root!r} has '
            f'semantic timestamps under {semantic_root!r}; for {names[0]!r} looked for '
            f'{looked}. {_SEMANTIC_HOWTO}')
    if unlabelled:
        print_log(f'DSEC events: skipping {len(unlabelled)} of {len(names)} sequences that have '
                  f'no semantic timestamps under {semantic_root!r} (not labelled in '
                  f'DSEC-Semantic): {", ".join(unlabelled)}', logger='current')
    return list(stamp_paths), stamp_paths


def convert_dsec_events(events_root: str, out_root: str, semantic_root: str | None = None,
                        sequences: Sequence[str] | None = None,
                        representation: Representation = 'edge', backend: Backend = 'numpy',
                        progress_factory: Callable[[int], Callable[[], None]] | None = None,
                        pipelined: bool = True) -> EventConversionSummary:
    """Convert every labelled (or the selected) DSEC sequence to ``<out_root>/<seq>/<i:06d>.png``.

    All inputs are checked before any conversion starts, so a missing file fails
    fast with one error naming it. Where a sequence's label folder is unpacked beside
    its timestamps (:func:`find_semantic_label_dirs`), the number of label PNGs must
    equal the number of timestamps.

    Args:
        events_root (str): Folder of ``<seq>/events/left/{events,rectify_map}.h5``.
        out_root (str): Output folder (e.g. ``data/DSEC/69mask_test_edges``).
        semantic_root (str | None): Folder of ``<seq>/<seq>_semantic_timestamps.txt``.
            Defaults to ``events_root``.
        sequences (Sequence[str] | None): Sequences to convert; each must have events
            and semantic timestamps. Defaults to every sequence with events that has
            semantic timestamps (the others are unlabelled in DSEC-Semantic: they are
            skipped and logged; an error only if none has timestamps).
        representation (Representation): 'edge', 'histogram' or 'voxel'.
            Defaults to 'edge'.
        backend (Backend): 'numpy' or 'tonic'. Defaults to 'numpy'.
        progress_factory (Callable[[int], Callable[[], None]] | None): Given the
            total number of label windows, returns a per-window callback (the
            CLI passes a progress bar).
        pipelined (bool): Overlap decoding, rendering and writing (reader process,
            writer thread; :func:`convert_sequence`). Defaults to True.

    Returns:
        EventConversionSummary: Counts and timing of the run.
    """
    semantic_root = semantic_root or events_root
    names = find_sequences(events_root, sequences)
    if sequences:  # asked for by name: a missing timestamps file is an error
        stamp_paths = {name: find_semantic_timestamps(semantic_root, name) for name in names}
    else:
        names, stamp_paths = _labelled_sequences(events_root, semantic_root, names)
    jobs = []
    for name in names:
        seq_dir = osp.join(events_root, name)
        rectify_path = osp.join(seq_dir, RECTIFY_FILE)
        if not osp.isfile(rectify_path):
            raise MissingDataError(f'DSEC rectify map not found: {rectify_path!r}. {_DSEC_HOWTO}')
        timestamps = load_timestamps(stamp_paths[name])
        check_label_count(stamp_paths[name], len(timestamps),
                          find_semantic_label_dirs(semantic_root, name))
        jobs.append((name, osp.join(seq_dir, EVENTS_FILE), rectify_path, timestamps))
    total = sum(max(len(ts) - 1, 0) for *_, ts in jobs)
    progress = progress_factory(total) if progress_factory is not None else None
    summary = EventConversionSummary(sequences=names)
    for name, events_path, rectify_path, timestamps in jobs:
        convert_sequence(events_path, rectify_path, timestamps, osp.join(out_root, name),
                         representation, backend, progress, summary, pipelined)
    print_log(f'DSEC events: {summary.written} frames written, {summary.skipped} skipped '
              f'(existing), {summary.empty_windows} windows outside the recording, '
              f'{summary.events} events in {summary.seconds:.1f}s', logger='current')
    return summary
