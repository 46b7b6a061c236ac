"""Benchmark the DSEC events converter: events/s and peak memory per backend x representation.

Writes a synthetic recording in the real DSEC format (Blosc/ZSTD events.h5, a sub-pixel
rectify_map.h5, 20 Hz semantic timestamps) to a temporary folder, converts it with every
backend and representation, and prints a markdown table. Events cluster on the edges of a
procedural street scene (as real events do) with random polarity.

    python tools/benchmark_dsec_events.py --num-events 4000000 --windows 20

Throughput is end to end (HDF5 read + rectify + render + PNG write); memory is the
tracemalloc peak of a second run, to show it follows the window, not the recording.
"""
import argparse
import os.path as osp
import sys
import tempfile
import time
import tracemalloc

import cv2
import numpy as np

import madm  # noqa: F401  installs the mmcv-lite shim before mmseg
from madm.datasets.conversion.dsec_events import (SENSOR_HEIGHT, SENSOR_WIDTH, EventConversionSummary,
                                                  convert_sequence)
from madm.datasets.conversion.event_representations import REPRESENTATIONS
from madm.datasets.conversion.event_simulator import write_events_h5, write_rectify_map
from madm.datasets.conversion.synthetic import generate_scene

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


def run(recording: dict, out_dir: str, representation: str, backend: str,
        trace_memory: bool) -> tuple[float, EventConversionSummary, int]:
    """Convert once; returns (seconds, summary, tracemalloc peak bytes or 0)."""
    if trace_memory:
        tracemalloc.start()
    start = time.perf_counter()
    summary = convert_sequence(recording['events'], recording['rectify'],
                               recording['timestamps'], out_dir, representation, backend)
    seconds = time.perf_counter() - start
    peak = 0
    if trace_memory:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return seconds, summary, peak


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--num-events', type=int, default=4_000_000)
    parser.add_argument('--windows', type=int, default=20, help='50 ms label windows')
    parser.add_argument('--representations', nargs='+', default=list(REPRESENTATIONS),
                        choices=REPRESENTATIONS)
    parser.add_argument('--backends', nargs='+', default=['numpy', 'tonic'],
                        choices=('numpy', 'tonic'))
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
    rows = []
    with tempfile.TemporaryDirectory() as root:
        recording = make_recording(root, args.num_events, args.windows, args.seed)
        for representation in args.representations:
            for backend in args.backends:
                out = osp.join(root, f'{representation}_{backend}')
                # warm-up on one window: imports (tonic) and caches stay out of the timing
                run(dict(recording, timestamps=recording['timestamps'][:2]), out + '_w',
                    representation, backend, trace_memory=False)
                seconds, summary, _ = run(recording, out + '_t', representation, backend,
                                          trace_memory=False)
                _, _, peak = run(recording, out + '_m', representation, backend, trace_memory=True)
                rows.append(dict(representation=representation, backend=backend,
                                 events=summary.events, seconds=seconds,
                                 rate=summary.events / seconds, peak=peak,
                                 peak_window=summary.peak_window_events))
        # same window density, half the recording: an equal peak means memory follows the window
        half = dict(recording, timestamps=recording['timestamps'][:args.windows // 2 + 1])
        half_peak = run(half, osp.join(root, 'half'), args.representations[0], args.backends[0],
                        trace_memory=True)[2]
    numpy_rate = {r['representation']: r['rate'] for r in rows if r['backend'] == 'numpy'}
    print(f'\n{args.num_events} events, {args.windows} windows of 50 ms, 640x480 -> 640x440; '
          f'recording {recording["bytes"] / 2**20:.1f} MiB uncompressed\n')
    print('| representation | backend | events/s | seconds | numpy speed-up | peak MiB '
          '(tracemalloc) | largest window (events) |')
    print('|---|---|---|---|---|---|---|')
    for r in rows:
        speedup = numpy_rate.get(r['representation'], float('nan')) / r['rate']
        print(f"| {r['representation']} | {r['backend']} | {r['rate'] / 1e6:.2f} M | "
              f"{r['seconds']:.2f} | {speedup:.1f}x | {r['peak'] / 2**20:.1f} | "
              f"{r['peak_window']} |")
    full_peak = rows[0]['peak']
    print(f"\nmemory bound: {rows[0]['representation']}/{rows[0]['backend']} peak "
          f'{full_peak / 2**20:.1f} MiB on all {args.windows} windows, '
          f'{half_peak / 2**20:.1f} MiB on the first {args.windows // 2}')
    return rows


if __name__ == '__main__':
    main()
