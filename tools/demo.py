"""The embedded demo: synthetic RGB -> event (or depth / infrared) adaptation on a CPU.

    python tools/demo.py --modality event        # what `make demo` runs

Writes a synthetic labelled RGB source and an unlabelled target modality
(data_converters/synthetic.py's generator), for events and depth pretrains a tiny Stable
Diffusion on those images without labels (madm/apis/tiny_sd_pretraining.py: the CPU stand-in
for SD-1.4's weights; infrared uses the random tiny preset), trains source-only, MADM
and a target-supervised oracle from it (configs/madm/demo_rgb2<modality>*.py, through
tools/train.py), scores each with tools/test.py, scores MADM once more with its batch-norm
statistics re-estimated on the unlabelled target images (not in MADM), and prints one
table of target mIoU. Rerunning reuses the data, the prior
and every finished run; --fresh starts the runs over (not the data or the prior).
"""
import argparse
import os.path as osp
import shutil

import madm  # noqa: F401  isort: skip
from madm.utils.demo import (DEMO_TABLE_VARIANTS, MODALITIES, format_demo_table, run_demo,
                             runs_dir)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--modality', choices=MODALITIES, default='event')
    parser.add_argument('--data-root', default='data/demo', help='synthetic data folder')
    parser.add_argument('--work-dir', default='work_dirs/demo', help='runs, logs and results')
    parser.add_argument('--seed', type=int, default=0, help='training seed')
    parser.add_argument('--max-iters', type=int, help='override the schedule (quick look)')
    parser.add_argument('--fresh', action='store_true',
                        help="delete this modality's earlier runs (not the data or the prior) "
                        'first')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    runs = runs_dir(args.work_dir, args.modality, args.seed)
    if args.fresh and osp.isdir(runs):
        shutil.rmtree(runs)
    results = run_demo(args.modality, args.data_root, args.work_dir, DEMO_TABLE_VARIANTS,
                       seed=args.seed, max_iters=args.max_iters,
                       echo=lambda line: print(line, flush=True))
    print(f'\nSynthetic RGB -> {args.modality}, target test split '
          f'(logs and checkpoints under {runs}):\n', flush=True)
    print(format_demo_table(results), flush=True)


if __name__ == '__main__':
    main()
