"""DSEC reader, converter (both backends), CLI and benchmark on real-format files."""
import importlib.util
import os
import os.path as osp
import subprocess
import sys
import zlib

import cv2
import numpy as np
import pytest

from madm.datasets.conversion import dsec_events
from madm.datasets.conversion.dsec_events import (
    DSECEventReader, NumpyEventRenderer, convert_dsec_events,
    find_semantic_timestamps, label_windows)
from madm.datasets.conversion.event_representations import identity_rectify_map
from madm.datasets.conversion.event_simulator import write_events_h5, write_rectify_map
from madm.utils.paths import MissingDataError
from _helpers import REPO_ROOT

# The GPL-3.0 tonic backend lives outside the madm package, in data_converters/.
sys.path.insert(0, osp.join(REPO_ROOT, 'data_converters'))
from tonic_backend import TonicEventRenderer  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
T_OFFSET = 49_599_300_000
SEQ = 'zurich_city_13_a'


def _load_script(rel_path):
    spec = importlib.util.spec_from_file_location(osp.basename(rel_path)[:-3],
                                                  osp.join(ROOT, rel_path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _recording(root, t_offset_shape='scalar', shift=(0.0, 0.0), n=20_000, labels=4):
    rng = np.random.default_rng(0)
    timestamps = T_OFFSET + 60_000 + 50_000 * np.arange(labels, dtype=np.int64)
    t = np.sort(rng.integers(T_OFFSET, timestamps[-1] + 30_000, n))
    t[:3] = timestamps[1]  # events exactly on a window boundary
    t.sort()
    x, y, p = rng.integers(0, 640, n), rng.integers(0, 480, n), rng.integers(0, 2, n)
    ev_dir = osp.join(root, SEQ, 'events', 'left')
    write_events_h5(osp.join(ev_dir, 'events.h5'), x, y, t, p, T_OFFSET, t_offset_shape)
    write_rectify_map(osp.join(ev_dir, 'rectify_map.h5'), identity_rectify_map(480, 640, shift))
    np.savetxt(osp.join(root, SEQ, f'{SEQ}_semantic_timestamps.txt'), timestamps, fmt='%d')
    return dict(x=x, y=y, t=t, p=p, timestamps=timestamps,
                events=osp.join(ev_dir, 'events.h5'))


@pytest.mark.parametrize('t_offset_shape', ['scalar', 'array'])
def test_reader_matches_brute_force_half_open_windows(tmp_path, t_offset_shape):
    rec = _recording(str(tmp_path), t_offset_shape)
    t = rec['t']
    with DSECEventReader(rec['events']) as reader:
        assert reader.t_offset == T_OFFSET
        for t0, t1 in [(rec['timestamps'][0], rec['timestamps'][1]),
                       (rec['timestamps'][1], rec['timestamps'][2]),
                       (T_OFFSET + 1234, T_OFFSET + 1235), (T_OFFSET + 777, T_OFFSET + 90_001)]:
            mask = (t >= t0) & (t < t1)
            out = reader.read(int(t0), int(t1))
            np.testing.assert_array_equal(out['t'], t[mask])
            np.testing.assert_array_equal(out['x'], rec['x'][mask])
            np.testing.assert_array_equal(out['p'], rec['p'][mask])
        assert reader.read(int(t[-1]) + 10_000, int(t[-1]) + 60_000) is None  # past the end
        assert reader.read(T_OFFSET - 10, T_OFFSET + 10) is None  # before the start
        last = reader.read(int(t[-1]) - 5, int(t[-1]) + 10**6)  # window end past the table
        assert last['t'][-1] == t[-1]


def test_convert_writes_one_frame_per_label_from_one_and_resumes(tmp_path):
    _recording(str(tmp_path / 'events'))
    out = tmp_path / 'edges'
    summary = convert_dsec_events(str(tmp_path / 'events'), str(out))
    files = sorted(os.listdir(out / SEQ))
    assert files == ['000001.png', '000002.png', '000003.png'] and summary.written == 3
    image = cv2.imread(str(out / SEQ / '000001.png'), cv2.IMREAD_UNCHANGED)
    assert image.shape == (440, 640) and image.dtype == np.uint8 and np.median(image) == 127
    os.remove(out / SEQ / '000002.png')
    again = convert_dsec_events(str(tmp_path / 'events'), str(out))
    assert (again.written, again.skipped) == (1, 2)
    assert label_windows(np.array([10, 20, 30])) == [(1, 10, 20), (2, 20, 30)]


def _png_rows(path):
    """The filter byte and raw bytes of every row of an 8-bit PNG (IDAT inflated)."""
    data = open(path, 'rb').read()
    pos, idat, header = 8, b'', None
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], 'big')
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        header = body if kind == b'IHDR' else header
        idat += body if kind == b'IDAT' else b''
        pos += 12 + length
    width, height = int.from_bytes(header[:4], 'big'), int.from_bytes(header[4:8], 'big')
    channels = {0: 1, 2: 3}[header[9]]
    rows = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, 1 + width * channels)
    pixels = rows[:, 1:].reshape(height, width, channels)
    return rows[:, 0], pixels[..., 0] if channels == 1 else pixels


def test_a_failed_write_in_the_writer_thread_stops_the_conversion(tmp_path, monkeypatch):
    _recording(str(tmp_path / 'events'))
    write = dsec_events.atomic_write_image

    def failing_write(path, image, params=()):
        if path.endswith('000002.png'):
            raise OSError('disk full')
        write(path, image, params)

    monkeypatch.setattr(dsec_events, 'atomic_write_image', failing_write)
    out = tmp_path / 'edges'
    with pytest.raises(OSError, match='disk full'):
        convert_dsec_events(str(tmp_path / 'events'), str(out))
    # the frame before the failure is complete and kept; nothing half-written is left
    files = sorted(os.listdir(out / SEQ))
    assert '000001.png' in files and '000002.png' not in files
    assert not [f for f in files if f.startswith('.tmp-')]
    monkeypatch.setattr(dsec_events, 'atomic_write_image', write)
    again = convert_dsec_events(str(tmp_path / 'events'), str(out))  # resumes
    assert again.written + again.skipped == 3 and again.written >= 1


@pytest.mark.parametrize('representation', ['edge', 'histogram'])
def test_event_frames_are_written_unfiltered_and_lossless(tmp_path, representation):
    _recording(str(tmp_path / 'events'))
    out = tmp_path / representation
    convert_dsec_events(str(tmp_path / 'events'), str(out), representation=representation)
    for name in sorted(os.listdir(out / SEQ)):
        filters, pixels = _png_rows(str(out / SEQ / name))
        assert (filters == 0).all()  # EVENT_PNG_PARAMS: no row filter
        decoded = cv2.imread(str(out / SEQ / name), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(pixels, decoded if decoded.ndim == 2 else decoded[..., ::-1])


@pytest.mark.parametrize('representation', ['edge', 'histogram', 'voxel'])
def test_numpy_and_tonic_backends_agree_before_quantisation(tmp_path, representation):
    pytest.importorskip('tonic')
    rec = _recording(str(tmp_path))
    rect = identity_rectify_map(480, 640)
    t0, t1 = int(rec['timestamps'][1]), int(rec['timestamps'][2])
    with DSECEventReader(rec['events']) as reader:
        events = reader.read(t0, t1)
    grid_np, latest_np = NumpyEventRenderer(rect, representation).accumulate(events, t0, t1)
    grid_tonic, latest_tonic = TonicEventRenderer(rect, representation).accumulate(events, t0, t1)
    assert grid_np.shape == grid_tonic.shape == ({'edge': 1, 'histogram': 2, 'voxel': 3}
                                                 [representation], 440, 640)
    np.testing.assert_allclose(grid_np, grid_tonic, atol=1e-5)
    assert np.abs(grid_np).sum() > 0
    if representation == 'histogram':
        np.testing.assert_allclose(latest_np, latest_tonic)


def test_reader_columns_skip_time_and_keep_exact_bounds(tmp_path):
    rec = _recording(str(tmp_path))
    t = rec['t']
    with DSECEventReader(rec['events']) as reader:
        # bounds on, off and between ms marks; the 3 events sitting on timestamps[1]
        for t0, t1 in [(rec['timestamps'][0], rec['timestamps'][1]),
                       (rec['timestamps'][1], rec['timestamps'][1] + 1),
                       (T_OFFSET + 2000, T_OFFSET + 7000), (T_OFFSET + 1999, T_OFFSET + 7001)]:
            full = reader.read(int(t0), int(t1))
            no_time = reader.read(int(t0), int(t1), columns='xyp')
            assert sorted(no_time) == ['p', 'x', 'y']
            mask = (t >= t0) & (t < t1)
            for key in 'xyp':
                np.testing.assert_array_equal(no_time[key], full[key])
                np.testing.assert_array_equal(no_time[key], rec[key][mask])


def _reference_accumulate(events, rect, representation, t0, t1):
    """The general (slow) path: per-pixel grids, then the dense rectification."""
    from madm.datasets.conversion.event_representations import (
        latest_timestamp, make_rectify_splat, polarity_histogram, rectify_image,
        rectify_image_max, voxel_grid)
    splat = make_rectify_splat(rect, 440)
    x, y, t, p = (np.asarray(events[k], np.int64) for k in 'xytp')
    if representation == 'histogram':
        return (rectify_image(polarity_histogram(x, y, p, 480, 640), splat),
                rectify_image_max(latest_timestamp(x, y, t, 480, 640, t0, t1), splat))
    bins = 1 if representation == 'edge' else 3
    return rectify_image(voxel_grid(x, y, t, p, bins, 480, 640), splat), None


@pytest.mark.parametrize('representation', ['edge', 'histogram', 'voxel'])
def test_numpy_renderer_fast_path_equals_general_path(tmp_path, representation):
    rec = _recording(str(tmp_path))
    ys, xs = np.mgrid[0:480, 0:640].astype(np.float32)
    # sub-pixel, non-uniform map that pushes the right edge and the bottom rows out
    rect = np.stack([xs * 1.01 + 0.3, ys * 0.98 + 0.45 + 0.001 * xs], -1)
    t0, t1 = int(rec['timestamps'][1]), int(rec['timestamps'][2])
    with DSECEventReader(rec['events']) as reader:
        events = reader.read(t0, t1)
    renderer = NumpyEventRenderer(rect, representation)
    grid, latest = renderer.accumulate(events, t0, t1)
    ref_grid, ref_latest = _reference_accumulate(events, rect, representation, t0, t1)
    assert np.abs(ref_grid).sum() > 0
    np.testing.assert_allclose(grid, ref_grid, atol=1e-5)
    if representation == 'histogram':
        np.testing.assert_allclose(latest, ref_latest, atol=1e-6)
    # edge windows are read without t: same result
    if representation == 'edge':
        with DSECEventReader(rec['events']) as reader:
            no_time = reader.read(t0, t1, columns=renderer.columns)
        assert 't' not in no_time
        np.testing.assert_array_equal(renderer(no_time, t0, t1), renderer(events, t0, t1))


def test_sub_pixel_rectification_shifts_events(tmp_path):
    rec = _recording(str(tmp_path), n=2000)
    t0, t1 = int(rec['timestamps'][0]), int(rec['timestamps'][3])
    with DSECEventReader(rec['events']) as reader:
        events = reader.read(t0, t1)
    base = NumpyEventRenderer(identity_rectify_map(480, 640), 'histogram').accumulate(
        events, t0, t1)[0]
    half = NumpyEventRenderer(identity_rectify_map(480, 640, (0.5, 0.0)), 'histogram').accumulate(
        events, t0, t1)[0]
    # each event splits half/half between its column and the next; column 639 falls outside
    expected = 0.5 * base
    expected[..., 1:] += 0.5 * base[..., :-1]
    expected[..., 639] -= 0.5 * base[..., 639]
    np.testing.assert_allclose(half, expected, atol=1e-5)


def test_bad_inputs_raise_one_clear_error(tmp_path):
    with pytest.raises(MissingDataError, match='events.h5'):
        DSECEventReader(str(tmp_path / 'nope' / 'events.h5'))
    (tmp_path / 'ev' / SEQ).mkdir(parents=True)
    with pytest.raises(MissingDataError, match='events/left/events.h5'):
        convert_dsec_events(str(tmp_path / 'ev'), str(tmp_path / 'out'))
    rec_root = tmp_path / 'rec'
    _recording(str(rec_root), n=100)
    os.remove(rec_root / SEQ / f'{SEQ}_semantic_timestamps.txt')
    with pytest.raises(MissingDataError, match=f'{SEQ}_semantic_timestamps.txt'):
        convert_dsec_events(str(rec_root), str(tmp_path / 'out'))
    with pytest.raises(MissingDataError, match='semantic-root'):
        find_semantic_timestamps(str(rec_root), SEQ)


def test_madm_alone_has_no_tonic_backend_and_says_where_it_is(monkeypatch):
    from madm.datasets.conversion import dsec_events
    monkeypatch.delitem(dsec_events.RENDERER_BACKENDS, 'tonic', raising=False)
    with pytest.raises(ValueError, match='data_converters/dsec_events.py --backend tonic'):
        dsec_events.build_renderer(identity_rectify_map(480, 640), 'edge', backend='tonic')


def test_missing_tonic_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, 'tonic', None)
    with pytest.raises(ImportError, match=r"pip install -e '\.\[tonic\]'"):
        TonicEventRenderer(identity_rectify_map(480, 640), 'edge')


def test_reading_without_hdf5plugin_names_the_fix_and_core_never_imports_tonic(tmp_path):
    rec = _recording(str(tmp_path), n=100)
    code = ('import sys; sys.modules["hdf5plugin"] = None\n'
            'from madm.datasets.conversion.dsec_events import DSECEventReader\n'
            'assert "tonic" not in sys.modules, "madm imported tonic"\n'
            f'DSECEventReader({rec["events"]!r})\n')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert result.returncode != 0
    assert 'pip install hdf5plugin' in result.stderr and 'events.h5' in result.stderr


def test_cli_help_and_run(tmp_path, capsys):
    cli = _load_script('data_converters/dsec_events.py')
    with pytest.raises(SystemExit) as exc:
        cli.main(['--help'])
    assert exc.value.code == 0
    _recording(str(tmp_path / 'events'), n=500)
    cli.main([str(tmp_path / 'events'), str(tmp_path / 'out'), '--representation', 'voxel',
              '--sequences', SEQ])
    assert '3 frames written' in capsys.readouterr().out
    assert cv2.imread(str(tmp_path / 'out' / SEQ / '000003.png')).shape == (440, 640, 3)
    # --backend tonic loads the GPL backend from beside the script.
    cli.main([str(tmp_path / 'events'), str(tmp_path / 'out_tonic'), '--backend', 'tonic',
              '--sequences', SEQ])
    assert '3 frames written' in capsys.readouterr().out
    # --sequential decodes, renders and writes in the CLI's own thread; same frames
    cli.main([str(tmp_path / 'events'), str(tmp_path / 'out_seq'), '--sequential',
              '--representation', 'voxel', '--sequences', SEQ])
    assert '3 frames written' in capsys.readouterr().out
    for name in ('000001.png', '000002.png', '000003.png'):
        assert np.array_equal(cv2.imread(str(tmp_path / 'out' / SEQ / name)),
                              cv2.imread(str(tmp_path / 'out_seq' / SEQ / name)))


def test_benchmark_main_runs_on_a_tiny_recording(capsys):
    bench = _load_script('tools/benchmark_dsec_events.py')
    rows = bench.main(['--events-per-window', '1500', '--windows', '2', '--repeat', '1',
                       '--representations', 'edge', 'voxel', '--backends', 'numpy', 'tonic'])
    assert len(rows) == 4
    assert all(r['events'] > 0 and r['peak'] > 0 and r['render_rate'] > 0
               and r['sequential_rate'] > 0 for r in rows)
    # the speed-up column is relative to numpy: exactly 1 on the numpy rows
    assert all(r['speedup']['rate'] == 1.0 for r in rows if r['backend'] == 'numpy')
    out = capsys.readouterr().out
    assert '| 1,500 | edge | numpy |' in out and '| 1,500 | voxel | tonic |' in out
    # shared costs are measured on the numpy rows; the ceiling bounds the tonic rows' ratio
    assert all(r['decode_seconds'] > 0 and r['write_seconds'] > 0
               for r in rows if r['backend'] == 'numpy')
    assert all(r['ceiling'] > 0 and 'render_budget_ms' in r for r in rows
               if r['backend'] == 'tonic')
    assert '| 1,500 | voxel |' in out.split('ceiling |')[1]


def test_read_into_decodes_the_same_events_into_caller_buffers(tmp_path):
    from madm.datasets.conversion.event_prefetch import FIELD_DTYPES
    rec = _recording(str(tmp_path))
    ts = [int(v) for v in rec['timestamps']]
    last = int(rec['t'][-1])
    windows = [(ts[0], ts[1]), (ts[1], ts[2]), (ts[1], ts[1] + 1),
               (T_OFFSET + 1999, T_OFFSET + 7001), (T_OFFSET - 10, T_OFFSET + 10),
               (last + 10_000, last + 60_000), (last - 5, last + 10**6),
               (last - 5, T_OFFSET + 5 * 10**9)]  # relative end beyond uint32
    with DSECEventReader(rec['events']) as reader:
        capacity = reader.max_window_events(windows)
        for columns in ('xytp', 'xyp'):
            # stale values in the buffers must be overwritten, not kept
            out = {key: np.full(capacity + 5, 7, FIELD_DTYPES[key]) for key in columns}
            for t0, t1 in windows:
                expected = reader.read(t0, t1, columns)
                count = reader.read_into(t0, t1, out, columns)
                if expected is None:
                    assert count is None
                    continue
                assert count == len(expected['x'])
                for key in columns:
                    np.testing.assert_array_equal(out[key][:count], expected[key])
        assert sum(reader.read_into(t0, t1, out, 'xyp') or 0 for t0, t1 in windows) > 0
        tail = reader.read(last - 5, T_OFFSET + 5 * 10**9)
        np.testing.assert_array_equal(tail['t'], rec['t'][rec['t'] >= last - 5])
        with pytest.raises(ValueError, match='do not fit'):
            reader.read_into(ts[0], ts[1], {key: np.zeros(3, FIELD_DTYPES[key]) for key in 'xp'},
                             'xp')


def _events_only(root, name, n=200):
    """A sequence with events and rectify map but no semantic timestamps (unlabelled)."""
    rng = np.random.default_rng(1)
    t = np.sort(rng.integers(T_OFFSET, T_OFFSET + 300_000, n))
    ev_dir = osp.join(root, name, 'events', 'left')
    write_events_h5(osp.join(ev_dir, 'events.h5'), rng.integers(0, 640, n),
                    rng.integers(0, 480, n), t, rng.integers(0, 2, n), T_OFFSET)
    write_rectify_map(osp.join(ev_dir, 'rectify_map.h5'), identity_rectify_map(480, 640))


def test_without_sequences_only_labelled_recordings_are_converted(tmp_path, monkeypatch):
    # DSEC train: 41 recordings, 8 with DSEC-Semantic labels (timestamps)
    root = str(tmp_path / 'train')
    _events_only(root, 'interlaken_00_c')
    _recording(root, n=500)
    _events_only(root, 'zurich_city_99_z')
    logged = []
    monkeypatch.setattr(dsec_events, 'print_log', lambda msg, **kw: logged.append(msg))
    summary = convert_dsec_events(root, str(tmp_path / 'out'))
    assert summary.sequences == [SEQ] and summary.written == 3
    assert sorted(os.listdir(tmp_path / 'out')) == [SEQ]
    skipped = [m for m in logged if 'skipping' in m]
    assert len(skipped) == 1 and '2 of 3' in skipped[0]
    assert 'interlaken_00_c' in skipped[0] and 'zurich_city_99_z' in skipped[0]
    # named explicitly, a recording without timestamps is still an error
    with pytest.raises(MissingDataError, match='interlaken_00_c_semantic_timestamps.txt'):
        convert_dsec_events(root, str(tmp_path / 'out2'), sequences=['interlaken_00_c'])
    # and so is a split where no recording has timestamps
    os.remove(osp.join(root, SEQ, f'{SEQ}_semantic_timestamps.txt'))
    with pytest.raises(MissingDataError, match='None of the 3 sequences') as exc:
        convert_dsec_events(root, str(tmp_path / 'out3'))
    assert 'semantic-root' in str(exc.value)
    assert not osp.exists(tmp_path / 'out2') and not osp.exists(tmp_path / 'out3')


def _touch_labels(label_dir, count, extra=()):
    os.makedirs(label_dir, exist_ok=True)
    for name in [f'{i:06d}.png' for i in range(count)] + list(extra):
        open(osp.join(label_dir, name), 'wb').close()


def test_label_count_must_match_the_timestamps(tmp_path):
    events = str(tmp_path / 'events')
    rec = _recording(events, n=500)  # 4 timestamps
    sem = tmp_path / 'semantic'
    stamps = sem / SEQ / f'{SEQ}_semantic_timestamps.txt'
    stamps.parent.mkdir(parents=True)
    np.savetxt(stamps, rec['timestamps'], fmt='%d')
    labels = sem / SEQ / '11classes'
    _touch_labels(labels, 3, extra=['.tmp-ab12.png', '._000003.png'])  # hidden: not labels
    out = tmp_path / 'out'
    with pytest.raises(ValueError) as exc:
        convert_dsec_events(events, str(out), semantic_root=str(sem))
    msg = str(exc.value)
    assert '4 timestamps' in msg and '3 label PNGs' in msg
    assert str(stamps) in msg and str(labels) in msg
    assert not out.exists()  # checked before anything is converted
    # the ESS layout: semantic/timestamps.txt and semantic/11classes/data/, counts agree
    ess = tmp_path / 'ess'
    (ess / SEQ / 'semantic').mkdir(parents=True)
    np.savetxt(ess / SEQ / 'semantic' / 'timestamps.txt', rec['timestamps'], fmt='%d')
    _touch_labels(ess / SEQ / 'semantic' / '11classes' / 'data', 4)
    assert dsec_events.find_semantic_label_dirs(str(ess), SEQ) == \
        [str(ess / SEQ / 'semantic' / '11classes' / 'data')]
    assert convert_dsec_events(events, str(out), semantic_root=str(ess)).written == 3
    _touch_labels(ess / SEQ / 'semantic' / 'left' / '19classes', 5)
    with pytest.raises(ValueError, match='5 label PNGs'):
        convert_dsec_events(events, str(tmp_path / 'out_19'), semantic_root=str(ess),
                            sequences=[SEQ])
