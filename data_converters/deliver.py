"""Convert DELIVER labels to the 11 depth classes and write depth encodings.

Example::

    python data_converters/deliver.py data/DELIVER --encodings colormap inverse_depth
"""
import argparse

import madm  # noqa: F401  installs the mmcv-lite shim before mmseg is imported
from madm.datasets.conversion import ConversionError
from madm.datasets.conversion.deliver import DELIVER_SPLITS, convert_deliver
from madm.datasets.splits import DELIVER_CONDITIONS
from madm.utils.paths import MissingDataError


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Write semantic_11/ (uint8, 11 classes, 255 ignore) from DELIVER semantic/ '
        'and, optionally, depth_<encoding>/ 3-channel images. Existing outputs are skipped.')
    parser.add_argument('root', help='DELIVER root (holds depth/ and semantic/)')
    parser.add_argument('--out-root', default=None, help='output root (default: root)')
    parser.add_argument('--splits', nargs='+', default=list(DELIVER_SPLITS),
                        choices=DELIVER_SPLITS, help='splits to convert (missing ones skipped)')
    parser.add_argument('--conditions', nargs='+', default=list(DELIVER_CONDITIONS),
                        choices=DELIVER_CONDITIONS, help='weather conditions')
    parser.add_argument('--encodings', nargs='*', default=[],
                        choices=['replicate', 'inverse_depth', 'colormap'],
                        help='depth encodings to write (replicate = reference gray x3)')
    parser.add_argument('--no-labels', action='store_true', help='skip semantic_11/')
    parser.add_argument('--no-progress', action='store_true', help='hide the progress bars')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    try:
        summary = convert_deliver(args.root, args.out_root, args.splits, args.conditions,
                                  args.encodings, labels=not args.no_labels,
                                  show_progress=not args.no_progress)
    except (ConversionError, MissingDataError) as e:
        raise SystemExit(f'error: {e}') from None
    print(f'deliver: {summary}')


if __name__ == '__main__':
    main()
