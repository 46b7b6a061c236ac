"""Prepare Cityscapes for madm: labelTrainIds PNGs and rare-class-sampling statistics.

Example::

    python data_converters/cityscapes.py data/cityscapes
"""
import argparse

import madm  # noqa: F401  installs the mmcv-lite shim before mmseg is imported
from madm.datasets.conversion import ConversionError
from madm.datasets.conversion.cityscapes import convert_cityscapes
from madm.utils.paths import MissingDataError


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Write gtFine *_labelTrainIds.png from *_labelIds.png where missing, then '
        'sample_class_stats.json and samples_with_class.json (DAFormer format) into the '
        'Cityscapes root. Existing outputs are skipped, so an interrupted run can be resumed.')
    parser.add_argument('root', help='Cityscapes root (holds leftImg8bit/ and gtFine/)')
    parser.add_argument('--no-progress', action='store_true', help='hide the progress bars')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    try:
        summary = convert_cityscapes(args.root, show_progress=not args.no_progress)
    except (ConversionError, MissingDataError) as e:
        raise SystemExit(f'error: {e}') from None
    print(f'cityscapes: {summary}')


if __name__ == '__main__':
    main()
