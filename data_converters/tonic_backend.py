"""The optional tonic backend of the DSEC events converter (tonic is GPL-3.0).

Kept outside the ``madm`` package so that madm itself never imports GPL code. Importing
this module registers the backend as ``'tonic'`` in
:data:`madm.datasets.conversion.dsec_events.RENDERER_BACKENDS`;
``data_converters/dsec_events.py --backend tonic`` does that for you.
"""
import numpy as np

from madm.datasets.conversion.dsec_events import (EVENT_COLUMNS, LABEL_HEIGHT, RENDERER_BACKENDS,
                                                  EventRenderer)
from madm.datasets.conversion.event_representations import Representation, latest_timestamp


class TonicEventRenderer(EventRenderer):
    """Render a window with tonic's transforms (GPL-3.0 optional backend).

    tonic needs integer pixels, so rectified coordinates are rounded (events
    mapped outside the sensor, or below row 440, are dropped). Counts come from
    ``ToImage`` (edge = ON - OFF, histogram) and the 3-bin grid from
    ``ToVoxelGrid``. tonic normalises time to ``[0, B]`` and drops events at
    ``B``; two cancelling events at the first timestamp and one at
    ``t[0] + B/(B-1) * (t[-1] - t[0])`` make its bins equal ESS's
    ``(B-1) * (t - t[0]) / (t[-1] - t[0])`` used by the numpy backend.
    The converter reads the same event fields for both backends (``ToImage`` ignores
    time, so 'edge' windows come without ``t``).

    Args:
        rectify_map (np.ndarray): ``(480, 640, 2)`` rectification map.
        representation (Representation): 'edge', 'histogram' or 'voxel'.
        out_height (int): Rows kept after rectification. Defaults to 440.
    """

    def __init__(self, rectify_map: np.ndarray, representation: Representation,
                 out_height: int = LABEL_HEIGHT) -> None:
        try:
            import tonic  # GPL-3.0: imported only on this code path
        except ImportError as e:
            raise ImportError('The tonic backend needs the optional GPL-3.0 package tonic: '
                              "`pip install -e '.[tonic]'` in the madm checkout, or use "
                              '--backend numpy.') from e
        self.tonic = tonic
        self.rectify_map = rectify_map
        self.representation = representation
        self.columns = EVENT_COLUMNS[representation]
        self.out_height = out_height
        self.sensor_size = (rectify_map.shape[1], out_height, 2)

    def _rectified_structured(self, events: dict[str, np.ndarray]) -> np.ndarray:
        height, width = self.rectify_map.shape[:2]
        xy = self.rectify_map[events['y'], events['x']].astype(np.float64)
        inside = ((xy[:, 0] >= 0) & (xy[:, 0] <= width - 1) & (xy[:, 1] >= 0)
                  & (xy[:, 1] <= height - 1))
        xi, yi = np.rint(xy[:, 0]).astype(np.int64), np.rint(xy[:, 1]).astype(np.int64)
        keep = inside & (yi < self.out_height)
        t = events['t'][keep] if 't' in events else np.zeros(int(keep.sum()), np.int64)
        # tonic pitfall (environment.md §5): polarity must be int8 0/1
        return self.tonic.io.make_structured_array(
            xi[keep], yi[keep], t, events['p'][keep].astype(np.int8),
            dtype=np.dtype([('x', '<i2'), ('y', '<i2'), ('t', '<i8'), ('p', 'i1')]))

    def _voxel(self, structured: np.ndarray, t_first: int, t_last: int, bins: int) -> np.ndarray:
        span = max(t_last - t_first, 1)
        # integer time rescaling by (B-1) keeps the end sentinel exact
        ext = np.zeros(len(structured) + 3, structured.dtype)
        ext['t'][:2] = 0
        ext['p'][:2] = (1, 0)
        ext[2:-1] = structured
        ext['t'][2:-1] = (structured['t'] - t_first) * (bins - 1)
        ext['t'][-1] = span * bins
        grid = self.tonic.transforms.ToVoxelGrid(self.sensor_size, n_time_bins=bins)(ext)
        return grid[:, 0].astype(np.float32)

    def accumulate(self, events: dict[str, np.ndarray], t_start: int,
                   t_end: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Same contract as :meth:`NumpyEventRenderer.accumulate`."""
        width, height = self.sensor_size[:2]
        structured = self._rectified_structured(events)
        if len(structured) == 0:
            channels = {'edge': 1, 'histogram': 2, 'voxel': 3}[self.representation]
            empty = np.zeros((channels, height, width), np.float32)
            return empty, (np.zeros((height, width), np.float32)
                           if self.representation == 'histogram' else None)
        if self.representation == 'voxel':
            t = events['t']
            return self._voxel(structured, int(t[0]), int(t[-1]), 3), None
        counts = self.tonic.transforms.ToImage(self.sensor_size)(structured).astype(np.float32)
        if self.representation == 'edge':
            return (counts[1] - counts[0])[None], None
        latest = latest_timestamp(structured['x'], structured['y'], structured['t'], height,
                                  width, t_start, t_end)
        return counts, latest


RENDERER_BACKENDS['tonic'] = TonicEventRenderer
