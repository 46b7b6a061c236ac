"""Benchmark the DSEC events converter: events/s and peak memory per backend x representation.

For each density (events per 50 ms label window) writes a synthetic recording in the real
DSEC format (Blosc/ZSTD events.h5, a sub-pixel rectify_map.h5, 20 Hz semantic timestamps) to
a temporary folder and converts it with every backend and representation. Events cluster on
the edges of a procedural street scene (as real events do) with random polarity. DSEC
windows hold roughly 0.2-2 M events at 640x480, hence the default densities.

    OMP_NUM_THREADS=1 python tools/benchmark_dsec_events.py \\
        --events-per-window 200000 1000000 2000000 --windows 10

Per backend x representation it reports, in one run and on the same recording:

* end to end: ``convert_sequence`` (HDF5 read of the fields the representation needs,
  rectify, render, quantise, PNG encode, atomic write), events/s, as the converter runs by
  default (the next window decoded in a reader process and the previous frame written in
  a writer thread while this one renders) and
  sequentially (``pipelined=False``: every stage in one thread, one after another);
* render: the renderer alone on events already in memory (rectify + rasterise +
  quantise to the uint8 image), events/s, and its rasterising part alone
  (``accumulate``: rectify + rasterise, before quantisation);
* the numpy backend's speed-up over each backend on each of these;
* the costs both backends share, per window: decoding the representation's fields from
  HDF5 (the reader process's work) and PNG encode + atomic write of the numpy frame (the
  writer thread's). The pipeline overlaps them with the render, so no renderer, however
  fast, takes a window below the larger of them: the tonic end-to-end time divided by it
  is the **ceiling** of the numpy speed-up end to end. The **render budget** is what a 5x
  speed-up leaves the numpy renderer per window if the writer did not overlap it (tonic
  end-to-end time / 5 - write): on two cores, shared by the reader process, the writer
  thread and the renderer, the overlap is partial, so it is the conservative figure;
* the tracemalloc peak of a sequential end-to-end run (numpy and h5py buffers; HDF5's
  own C buffers are not traced), and the same for the first half of the recording:
  equal peaks mean memory follows the window, not the recording. Prefetching adds two
  shared-memory slots of the largest window (13 bytes per event), untraced.

Each measurement is preceded by a one-window warm-up (imports, tables); every time is the
fastest of ``--repeat`` passes over all windows. Prints a markdown table and returns its rows.
"""
import argparse
import os
import os.path as osp
import platform
import sys
import tempfile
import time
import tracemalloc

import cv2
import numpy as np

import madm  # noqa: F401  installs the mmcv-lite shim before mmseg
from madm.datasets.conversion.dsec_events import (EVENT_PNG_PARAMS, SENSOR_HEIGHT, SENSOR_WIDTH,
                                                  DSECEventReader, build_renderer,
                                                  convert_sequence, load_rectify_map, quantise)
from madm.datasets.conversion.event_representations import REPRESENTATIONS
from madm.datasets.conversion.event_simulator import write_events_h5, write_rectify_map
from madm.datasets.conversion.synthetic import generate_scene
from madm.utils.atomic_io import atomic_write_image

T0_US = 49_599_300_000
WINDOW_US = 50_000


def make_recording(root: str, num_events: int, windows: int, seed: int = 0) -> dict:
    """Write a synthetic recording; returns paths and the label timestamps."""
    rng = np.random.default_rng(seed)
    scene = generate_scene(SENSOR_HEIGHT, SENSOR_WIDTH, rng)
    edges = cv2.Canny(scene.instance.astype(np.uint16).clip(0, 255).astype(np.uint8), 0, 0)
    pool = np.flatnonzero(cv2.dilate(edges, np.ones((5, 5), np.uint8)))
    pixel = rng.choice(pool, num_events)
    timestamps = T0_US + 1_000 + WINDOW_US * np.arange(windows + 1, dtype=np.int64)
    t = np.sort(rng.integers(timestamps[0], timestamps[-1], num_events))
    events_path = osp.join(root, 'events.h5')
    write_events_h5(events_path, pixel % SENSOR_WIDTH, pixel // SENSOR_WIDTH, t,
                    rng.integers(0, 2, num_events), T0_US)
    del pixel, t
    # mild radial distortion: sub-pixel everywhere, a few pixels at the corners
    xs, ys = np.meshgrid(np.arange(SENSOR_WIDTH, dtype=np.float32),
                         np.arange(SENSOR_HEIGHT, dtype=np.float32))
    cx, cy = SENSOR_WIDTH / 2, SENSOR_HEIGHT / 2
    r2 = ((xs - cx) ** 2 + (ys - cy) ** 2) / (cx ** 2 + cy ** 2)
    rectify_path = osp.join(root, 'rectify_map.h5')
    write_rectify_map(rectify_path, np.stack([cx + (xs - cx) * (1 - 0.01 * r2),
                                              cy + (ys - cy) * (1 - 0.01 * r2)], -1))
    return dict(events=events_path, rectify=rectify_path, timestamps=timestamps,
                bytes=num_events * (2 + 2 + 4 + 1))


def run_end_to_end(recording: dict, out_dir: str, representation: str, backend: str,
                   trace_memory: bool = False, pipelined: bool = True) -> tuple[float, int, int]:
    """Convert once; returns (seconds, events, tracemalloc peak bytes or 0)."""
    if trace_memory:
        tracemalloc.start()
    start = time.perf_counter()
    summary = convert_sequence(recording['events'], recording['rectify'],
                               recording['timestamps'], out_dir, representation, backend,
                               pipelined=pipelined)
    seconds = time.perf_counter() - start
    peak = 0
    if trace_memory:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return seconds, summary.events, peak


def run_render(recording: dict, representation: str, backend: str) -> tuple[float, float, int]:
    """Render every window from memory; returns (accumulate s, accumulate+quantise s, events).

    Each window is read (untimed) just before it is rendered, so memory stays one window.
    """
    renderer = build_renderer(load_rectify_map(recording['rectify']), representation, backend)
    columns = getattr(renderer, 'columns', 'xytp')
    ts = recording['timestamps']
    raster = render = 0.0
    events_total = 0
    with DSECEventReader(recording['events']) as reader:
        for i in range(-1, len(ts) - 1):  # window -1: untimed warm-up on the first window
            t_start, t_end = int(ts[max(i, 0)]), int(ts[max(i, 0) + 1])
            events = reader.read(t_start, t_end, columns)
            start = time.perf_counter()
            grid, latest = renderer.accumulate(events, t_start, t_end)
            mid = time.perf_counter()
            quantise(representation, grid, latest, len(events['x']))
            end = time.perf_counter()
            if i >= 0:
                raster += mid - start
                render += end - start
                events_total += len(events['x'])
    return raster, render, events_total


def run_shared_costs(recording: dict, representation: str, out_dir: str) -> tuple[float, float]:
    """Time what every backend pays per window; returns (decode s, encode + write s) in all.

    Decoding reads each window's fields as the reader process does; the frames (numpy
    renderer, untimed) are then encoded and written as ``convert_sequence`` writes them.
    """
    renderer = build_renderer(load_rectify_map(recording['rectify']), representation)
    ts = recording['timestamps']
    decode = write = 0.0
    with DSECEventReader(recording['events']) as reader:
        for i in range(-1, len(ts) - 1):  # window -1: untimed warm-up on the first window
            t_start, t_end = int(ts[max(i, 0)]), int(ts[max(i, 0) + 1])
            start = time.perf_counter()
            events = reader.read(t_start, t_end, renderer.columns)
            mid = time.perf_counter()
            frame = renderer(events, t_start, t_end)
            end = time.perf_counter()
            atomic_write_image(osp.join(out_dir, f'{i + 1:06d}.png'), frame, EVENT_PNG_PARAMS)
            if i >= 0:
                decode += mid - start
                write += time.perf_counter() - end
    return decode, write


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--events-per-window', type=int, nargs='+',
                        default=[200_000, 1_000_000, 2_000_000],
                        help='densities to measure (events per 50 ms window)')
    parser.add_argument('--windows', type=int, default=10, help='50 ms label windows')
    parser.add_argument('--representations', nargs='+', default=list(REPRESENTATIONS),
                        choices=REPRESENTATIONS)
    parser.add_argument('--backends', nargs='+', default=['numpy', 'tonic'],
                        choices=('numpy', 'tonic'))
    parser.add_argument('--repeat', type=int, default=3,
                        help='timed passes per measurement; the fastest is reported')
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark, print a markdown table and return its rows."""
    args = parse_args(argv)
    if 'tonic' in args.backends:
        # GPL-3.0 backend: lives in data_converters/, never inside the madm package.
        sys.path.insert(0, osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                                    'data_converters'))
        import tonic_backend  # noqa: F401  registers 'tonic'
    rows, memory_checks = [], []
    for density in args.events_per_window:
        with tempfile.TemporaryDirectory() as root:
            recording = make_recording(root, density * args.windows, args.windows, args.seed)
            for representation in args.representations:
                for backend in args.backends:
                    out = osp.join(root, f'{representation}_{backend}')
                    # warm-up on one window: imports (tonic) and tables stay out of the timing
                    run_end_to_end(dict(recording, timestamps=recording['timestamps'][:2]),
                                   out + '_w', representation, backend)
                    # best of --repeat passes: other jobs on a shared machine only add time
                    seconds, events, _ = min(
                        run_end_to_end(recording, f'{out}_t{k}', representation, backend)
                        for k in range(args.repeat))
                    sequential = min(
                        run_end_to_end(recording, f'{out}_s{k}', representation, backend,
                                       pipelined=False)[0]
                        for k in range(args.repeat))
                    renders = [run_render(recording, representation, backend)
                               for _ in range(args.repeat)]
                    raster = min(r[0] for r in renders)
                    render = min(r[1] for r in renders)
                    # in-process reading, so that tracemalloc sees every event buffer
                    peak = run_end_to_end(recording, out + '_m', representation, backend,
                                          trace_memory=True, pipelined=False)[2]
                    decode = write = None
                    if backend == 'numpy':
                        costs = [run_shared_costs(recording, representation, f'{out}_c{k}')
                                 for k in range(args.repeat)]
                        decode, write = (min(c[0] for c in costs), min(c[1] for c in costs))
                    rows.append(dict(representation=representation, backend=backend,
                                     events_per_window=density, events=events,
                                     seconds=seconds, rate=events / seconds,
                                     sequential_rate=events / sequential,
                                     render_rate=events / render, raster_rate=events / raster,
                                     peak=peak, decode_seconds=decode,
                                     write_seconds=write))
            # same density, half the windows: an equal peak means memory follows the window
            half = dict(recording, timestamps=recording['timestamps'][:args.windows // 2 + 1])
            half_peak = run_end_to_end(half, osp.join(root, 'half'), args.representations[0],
                                       args.backends[0], trace_memory=True, pipelined=False)[2]
            full_peak = next(r['peak'] for r in rows if r['events_per_window'] == density)
            memory_checks.append((density, full_peak, half_peak))
    reference = {(r['representation'], r['events_per_window']): r for r in rows
                 if r['backend'] == 'numpy'}
    print(f"\n{args.windows} windows of 50 ms per density, best of {args.repeat}, "
          f"640x480 -> 640x440; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, numpy {np.__version__}\n")
    print('| events/window | representation | backend | end to end ev/s | e2e, sequential '
          'ev/s | render ev/s | rasterise ev/s | numpy speed-up (e2e / sequential / render '
          '/ rasterise) | peak MiB |')
    print('|---|---|---|---|---|---|---|---|---|')
    keys = ('rate', 'sequential_rate', 'render_rate', 'raster_rate')
    for r in rows:
        ref = reference.get((r['representation'], r['events_per_window']))
        speedup = ' / '.join(f'{ref[k] / r[k]:.1f}x' if ref else 'n/a' for k in keys)
        r['speedup'] = {k: ref[k] / r[k] for k in keys} if ref else None
        print(f"| {r['events_per_window']:,} | {r['representation']} | {r['backend']} | "
              f"{r['rate'] / 1e6:.1f} M | {r['sequential_rate'] / 1e6:.1f} M | "
              f"{r['render_rate'] / 1e6:.1f} M | {r['raster_rate'] / 1e6:.1f} M | {speedup} | "
              f"{r['peak'] / 2**20:.1f} |")
    print('\nCosts both backends share, ms per window (decode: HDF5 fields, in the reader '
          'process; write: PNG encode + atomic write, in the writer thread), the ceiling of the '
          'numpy speed-up end to end (tonic end-to-end time / the larger shared cost: a '
          'renderer that took no time) and the numpy render time per window that a 5x '
          'speed-up allows without overlap (tonic end-to-end time / 5 - write; "none" when '
          'that is not positive or decoding alone is over tonic / 5):\n')
    print('| events/window | representation | decode ms | write ms | numpy render ms | '
          'numpy e2e ms | tonic e2e ms | e2e speed-up | ceiling | render budget for 5x |')
    print('|---|---|---|---|---|---|---|---|---|---|')
    for r in rows:
        ref = reference.get((r['representation'], r['events_per_window']))
        if r['backend'] == 'numpy' or ref is None:
            continue
        per_window = {k: v / args.windows * 1e3 for k, v in dict(
            decode=ref['decode_seconds'], write=ref['write_seconds'],
            render=ref['events'] / ref['render_rate'], numpy=ref['seconds'],
            other=r['seconds']).items()}
        r['ceiling'] = per_window['other'] / max(per_window['decode'], per_window['write'])
        allowed = per_window['other'] / 5
        budget = allowed - per_window['write']
        r['render_budget_ms'] = budget if budget > 0 and per_window['decode'] <= allowed else None
        budget = 'none' if r['render_budget_ms'] is None else f"{r['render_budget_ms']:.2f}"
        print(f"| {r['events_per_window']:,} | {r['representation']} | "
              f"{per_window['decode']:.2f} | {per_window['write']:.2f} | "
              f"{per_window['render']:.2f} | {per_window['numpy']:.2f} | "
              f"{per_window['other']:.2f} | {per_window['other'] / per_window['numpy']:.1f}x | "
              f"{r['ceiling']:.1f}x | {budget} |")
    print()
    for density, full_peak, half_peak in memory_checks:
        print(f'memory bound at {density:,} events/window: {args.representations[0]}/'
              f'{args.backends[0]} peak {full_peak / 2**20:.1f} MiB on all {args.windows} '
              f'windows, {half_peak / 2**20:.1f} MiB on the first {args.windows // 2}')
    return rows


if __name__ == '__main__':
    main()
