"""Generate a small synthetic MADM dataset: a Cityscapes-like source and one target modality.

Written in the real on-disk formats (see madm/datasets/conversion/synthetic.py for the
layout), deterministic given --seed, and resumable. Example::

    python data_converters/synthetic.py --out data/synthetic --modality event
"""
import argparse
import time

import madm  # noqa: F401  installs the mmcv-lite shim before mmseg
from madm.datasets.conversion.event_representations import REPRESENTATIONS
from madm.datasets.conversion.synthetic import generate_synthetic_dataset


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--modality', required=True, choices=('depth', 'infrared', 'event'))
    parser.add_argument('--num-source', type=int, default=200, help='source train images')
    parser.add_argument('--num-target-train', type=int, default=200,
                        help='target train images (events: label windows)')
    parser.add_argument('--num-target-test', type=int, default=60,
                        help='target test images (events: label windows)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--source-size', type=int, nargs=2, default=(512, 256),
                        metavar=('W', 'H'), help='Cityscapes-like size, keep 2:1')
    parser.add_argument('--target-size', type=int, nargs=2, metavar=('W', 'H'),
                        help='depth (square, default 256 256) or infrared (4:3, default 320 240); '
                        'events are always 640x480 (labels 640x440)')
    parser.add_argument('--event-representation', choices=REPRESENTATIONS + ('none',),
                        default='edge', help="frames made from the events; 'none' keeps raw DSEC only")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    roots = generate_synthetic_dataset(
        args.out, args.modality, num_source=args.num_source,
        num_target_train=args.num_target_train, num_target_test=args.num_target_test,
        seed=args.seed, source_size=tuple(args.source_size),
        target_size=tuple(args.target_size) if args.target_size else None,
        event_representation=None if args.event_representation == 'none'
        else args.event_representation,
        progress=lambda stage: print(f'generating {stage} ...', flush=True))
    print(f'done in {time.perf_counter() - start:.1f}s: source {roots["source"]}, '
          f'target {roots["target"]}')


if __name__ == '__main__':
    main()
