"""Convert FMB labels to the 9 infrared classes and write infrared encodings.

Example::

    python data_converters/fmb.py data/FMB --encodings clahe
"""
import argparse

import madm  # noqa: F401  installs the mmcv-lite shim before mmseg is imported
from madm.datasets.conversion import ConversionError
from madm.datasets.conversion.fmb import FMB_SPLITS, convert_fmb
from madm.utils.paths import MissingDataError


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Write <split>/Label9/ (uint8, 9 classes, 255 ignore) from FMB <split>/Label/ '
        'and, optionally, <split>/Infrared_<encoding>/ images. Existing outputs are skipped.')
    parser.add_argument('root', help='FMB root (holds train/ and test/)')
    parser.add_argument('--out-root', default=None, help='output root (default: root)')
    parser.add_argument('--splits', nargs='+', default=list(FMB_SPLITS), choices=FMB_SPLITS)
    parser.add_argument('--encodings', nargs='*', default=[], choices=['replicate', 'clahe'],
                        help='infrared encodings to write (replicate = reference gray x3)')
    parser.add_argument('--clahe-clip-limit', type=float, default=2.0)
    parser.add_argument('--no-labels', action='store_true', help='skip Label9/')
    parser.add_argument('--no-progress', action='store_true', help='hide the progress bars')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    try:
        summary = convert_fmb(args.root, args.out_root, args.splits, args.encodings,
                              labels=not args.no_labels, clahe_clip_limit=args.clahe_clip_limit,
                              show_progress=not args.no_progress)
    except (ConversionError, MissingDataError) as e:
        raise SystemExit(f'error: {e}') from None
    print(f'fmb: {summary}')


if __name__ == '__main__':
    main()
