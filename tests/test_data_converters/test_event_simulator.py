"""ESIM-style simulator values and the DSEC events.h5 / rectify_map.h5 writers."""
import h5py
import hdf5plugin  # noqa: F401  lets h5py decode the Blosc datasets
import numpy as np

from madm.datasets.conversion.event_simulator import (BLOSC_FILTER_ID, compute_ms_to_idx,
                                                      simulate_events, write_events_h5,
                                                      write_rectify_map)


def test_threshold_crossings_by_hand():
    # pixel 0: log I rises by 0.5 -> two ON events at 0.2/0.5 and 0.4/0.5 of the interval;
    # pixel 1: log I falls by 0.25 -> one OFF event at 0.2/0.25; frame 3 repeats frame 2.
    f0 = np.array([[1.0, 1.0]])
    f1 = np.array([[np.exp(0.5), np.exp(-0.25)]])
    x, y, t, p = simulate_events(np.stack([f0, f1, f1]), np.array([1000, 2000, 3000]),
                                 contrast_threshold=0.2, eps=0.0)
    assert t.tolist() == [1400, 1800, 1800]
    assert x.tolist() == [0, 0, 1] and y.tolist() == [0, 0, 0]
    assert p.tolist() == [1, 1, 0]


def test_reference_carries_residual_to_next_frame():
    # C = 0.25; log I = 0, 3/8, 5/8. Interval 1: one event at 0.25 / 0.375 of 400 us, the
    # reference moves to 0.25 (not 0.375); interval 2: 0.375 again -> one more event.
    frames = np.exp(np.array([0.0, 0.375, 0.625]))[:, None, None]
    _, _, t, p = simulate_events(frames, np.array([0, 400, 800]), 0.25, eps=0.0)
    assert t.tolist() == [266, 666]
    assert p.tolist() == [1, 1]


def test_moving_edge_gives_sorted_events_on_the_edge_only():
    frames = np.full((4, 8, 12), 0.2)
    for k in range(4):
        frames[k, :, :4 + k] = 0.8  # bright half moves right one pixel per frame
    x, y, t, p = simulate_events(frames, np.arange(4) * 1000)
    assert np.all(np.diff(t) >= 0) and len(t) > 0
    assert set(x.tolist()) == {4, 5, 6} and np.all(p == 1)


def test_ms_to_idx_invariants():
    t = np.array([0, 999, 1000, 1000, 2500, 4001])
    idx = compute_ms_to_idx(t)
    assert len(idx) == 6  # ceil(4001 / 1000) + 1
    for ms, i in enumerate(idx):
        assert i == len(t) or t[i] >= ms * 1000
        assert i == 0 or t[i - 1] < ms * 1000


def test_events_h5_format_round_trip(tmp_path):
    path = str(tmp_path / 'events.h5')
    t_offset = 49_599_300_000
    t = t_offset + np.array([5, 1500, 1500, 2999])
    write_events_h5(path, [1, 2, 3, 4], [5, 6, 7, 8], t, [1, 0, 1, 0], t_offset,
                    t_offset_shape='array')
    with h5py.File(path, 'r') as f:
        for key in ('events/x', 'events/y', 'events/t', 'events/p', 'ms_to_idx'):
            assert str(BLOSC_FILTER_ID) in f[key]._filters
        assert f['events/x'].dtype == np.uint16 and f['events/t'].dtype == np.uint32
        assert f['events/p'].dtype == np.uint8 and f['ms_to_idx'].dtype == np.uint64
        assert f['events/t'][:].tolist() == [5, 1500, 1500, 2999]
        assert f['ms_to_idx'][:].tolist() == [0, 1, 3, 4]
        assert f['t_offset'].shape == (1,) and int(f['t_offset'][0]) == t_offset
    write_rectify_map(str(tmp_path / 'rectify_map.h5'), np.zeros((4, 5, 2)))
    with h5py.File(str(tmp_path / 'rectify_map.h5'), 'r') as f:
        assert f['rectify_map'].shape == (4, 5, 2) and f['rectify_map'].dtype == np.float32
