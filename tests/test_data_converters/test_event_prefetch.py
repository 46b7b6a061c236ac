"""madm.datasets.conversion.event_prefetch: windows read one ahead in a reader process."""
import multiprocessing as mp
import os
import os.path as osp

import numpy as np
import pytest

from madm.datasets.conversion.dsec_events import DSECEventReader, convert_sequence
from madm.datasets.conversion.event_prefetch import can_prefetch, read_windows
from madm.datasets.conversion.event_representations import identity_rectify_map
from madm.datasets.conversion.event_simulator import write_events_h5, write_rectify_map

T_OFFSET = 49_599_300_000
needs_fork = pytest.mark.skipif(not can_prefetch(), reason='no fork start method here')


def _recording(root: str, n: int = 30_000) -> dict:
    rng = np.random.default_rng(1)
    t = np.sort(rng.integers(T_OFFSET, T_OFFSET + 400_000, n))
    x, y, p = rng.integers(0, 640, n), rng.integers(0, 480, n), rng.integers(0, 2, n)
    events = osp.join(root, 'events.h5')
    write_events_h5(events, x, y, t, p, T_OFFSET)
    rectify = osp.join(root, 'rectify_map.h5')
    write_rectify_map(rectify, identity_rectify_map(480, 640, (0.3, -0.2)))
    # windows of uneven length, one before the recording, one past its end
    bounds = T_OFFSET + np.array([10_000, 60_000, 61_000, 150_000, 390_000, 900_000])
    windows = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
    windows.insert(2, (T_OFFSET - 50_000, T_OFFSET - 1))
    return dict(events=events, rectify=rectify, windows=windows,
                # the first label window starts before the recording: an empty frame
                timestamps=np.concatenate([[T_OFFSET - 20_000], bounds]))


@needs_fork
@pytest.mark.parametrize('columns', ['xytp', 'xyp', 'tp'])
def test_prefetched_windows_equal_direct_reads(tmp_path, columns):
    rec = _recording(str(tmp_path))
    got = [None if e is None else {k: v.copy() for k, v in e.items()}
           for e in read_windows(rec['events'], rec['windows'], columns)]
    with DSECEventReader(rec['events']) as reader:
        expected = [reader.read(t0, t1, columns) for t0, t1 in rec['windows']]
    assert len(got) == len(expected) == 6
    assert sum(e is None for e in got) == 1 and got[2] is None
    for a, b in zip(got, expected):
        if b is None:
            assert a is None
            continue
        assert list(a) == list(b)
        for key in b:
            assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key])
    assert not mp.active_children()  # the reader process is gone


def test_no_field_is_an_error(tmp_path):
    rec = _recording(str(tmp_path))
    with pytest.raises(ValueError, match='at least one'):
        next(read_windows(rec['events'], rec['windows'], columns='q'))


def test_window_bound_covers_every_window(tmp_path):
    rec = _recording(str(tmp_path))
    with DSECEventReader(rec['events']) as reader:
        bound = reader.max_window_events(rec['windows'])
        sizes = [len(e['x']) for e in (reader.read(*w, 'xp') for w in rec['windows'])
                 if e is not None]
    assert max(sizes) <= bound <= max(sizes) + 2 * 1000  # at most the ms around each end


@needs_fork
def test_reader_process_failure_is_raised_with_its_traceback(tmp_path, monkeypatch):
    rec = _recording(str(tmp_path))
    calls = []
    original = DSECEventReader.read_into

    def failing_read(self, t_start, t_end, out, columns='xytp'):
        calls.append(t_start)
        if len(calls) == 3:  # counted in the forked child, which inherits this patch
            raise OSError('Blosc decompression failed (simulated)')
        return original(self, t_start, t_end, out, columns)

    # the reader process decodes with read_into (straight into shared memory)
    monkeypatch.setattr(DSECEventReader, 'read_into', failing_read)
    seen = 0
    with pytest.raises(RuntimeError, match='simulated'):
        for _ in read_windows(rec['events'], rec['windows']):
            seen += 1
    assert seen == 2 and not mp.active_children()


@needs_fork
def test_stopping_early_ends_the_reader_process(tmp_path):
    rec = _recording(str(tmp_path))
    windows = read_windows(rec['events'], rec['windows'])
    first = next(windows)
    assert len(first['x']) > 0 and mp.active_children()
    windows.close()
    assert not mp.active_children()


def test_conversion_is_identical_pipelined_and_sequential(tmp_path):
    rec = _recording(str(tmp_path))
    outputs = {}
    for pipelined in (True, False):
        out = str(tmp_path / f'out_{pipelined}')
        summary = convert_sequence(rec['events'], rec['rectify'], rec['timestamps'], out,
                                   'voxel', pipelined=pipelined)
        assert summary.written == len(rec['timestamps']) - 1 and summary.empty_windows == 1
        outputs[pipelined] = {name: open(osp.join(out, name), 'rb').read()
                              for name in sorted(os.listdir(out))}
    assert outputs[True] == outputs[False] and len(outputs[True]) == 6
