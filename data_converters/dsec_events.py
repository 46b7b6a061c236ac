"""Convert DSEC events.h5 recordings into MADM event frames (one PNG per semantic label).

Example (MADM's "edge form" test frames)::

    python data_converters/dsec_events.py data/DSEC_raw/test data/DSEC/69mask_test_edges \\
        --semantic-root data/DSEC_semantic/test --sequences zurich_city_13_a

Without --sequences, every recording that has DSEC-Semantic timestamps is converted and the
unlabelled ones are skipped (logged). Resumable: existing PNGs are skipped, and every PNG is
written atomically.
"""
import argparse

from mmengine.utils import ProgressBar

import madm  # noqa: F401  installs the mmcv-lite shim before mmseg
from madm.datasets.conversion.dsec_events import convert_dsec_events
from madm.datasets.conversion.event_representations import REPRESENTATIONS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('events_root',
                        help='folder of <sequence>/events/left/{events,rectify_map}.h5')
    parser.add_argument('out_root',
                        help='output folder; frames go to <out_root>/<sequence>/<i:06d>.png')
    parser.add_argument('--semantic-root',
                        help='folder of <sequence>/<sequence>_semantic_timestamps.txt '
                        '(DSEC-Semantic split folder); defaults to events_root. Where '
                        '<sequence>/11classes/ (or 19classes/, semantic/...) is there too, '
                        'its PNG count must equal the number of timestamps')
    parser.add_argument('--sequences', nargs='+',
                        help='only these sequences; each needs semantic timestamps (default: '
                        'every sequence that has them; the unlabelled ones, e.g. 33 of the 41 '
                        'DSEC train recordings, are skipped and logged)')
    parser.add_argument('--representation', choices=REPRESENTATIONS, default='edge',
                        help="'edge' = MADM's signed gray frames (default)")
    parser.add_argument('--backend', choices=('numpy', 'tonic'), default='numpy',
                        help="'tonic' needs the optional GPL-3.0 package: "
                        "pip install -e '.[tonic]' in the madm checkout")
    parser.add_argument('--sequential', dest='pipelined', action='store_false',
                        help='run every stage in this thread, one after another, instead of '
                        'decoding the next window in a reader process and writing the '
                        'previous frame in a writer thread while the current one renders')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.backend == 'tonic':
        # GPL-3.0 backend: lives beside this script, never inside the madm package.
        import tonic_backend  # noqa: F401  registers 'tonic'
    summary = convert_dsec_events(
        args.events_root, args.out_root, semantic_root=args.semantic_root,
        sequences=args.sequences, representation=args.representation, backend=args.backend,
        progress_factory=lambda total: ProgressBar(total).update, pipelined=args.pipelined)
    print(f'\n{len(summary.sequences)} sequences: {summary.written} frames written, '
          f'{summary.skipped} already present, {summary.empty_windows} windows outside the '
          f'recording; {summary.events} events in {summary.seconds:.1f}s -> {args.out_root}')


if __name__ == '__main__':
    main()
