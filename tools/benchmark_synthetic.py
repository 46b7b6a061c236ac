"""Synthetic adaptation benchmark: the demo for every modality and seed, plus ablations.

    python tools/benchmark_synthetic.py                          # 3 modalities x 5 seeds
    python tools/benchmark_synthetic.py --modalities event depth --seeds 0 --skip-ablations

Runs tools/demo.py's variants (source-only, MADM, oracle, and MADM without DPLG /
LPLR unless --skip-ablations) for each modality and training seed, tests the source-only
and MADM checkpoints again with batch-norm statistics re-estimated on the target (AdaBN,
MADM + target BN), then writes the
"Synthetic adaptation benchmark" section of docs/benchmarks.md (target mIoU as
mean ± std over the seeds) and leaves the other sections untouched. Finished runs
are reused, so the benchmark can be extended seed by seed.

Where a demo starts from the tiny SD prior (events, depth), seed N also pretrains its own
prior with seed N (seed 0's is the one `make demo` uses), because two priors moved the
result as much as the training seed did; --shared-prior keeps seed 0's prior for all seeds.
"""
import argparse
import os.path as osp
import platform
import shlex
import sys

import madm  # noqa: F401  isort: skip
import torch

from madm.utils.atomic_io import atomic_write_text
from madm.utils.demo import (ABLATION_VARIANTS, DEMO_VARIANTS, MODALITIES, TEST_ONLY_VARIANTS,
                             demo_uses_prior, format_benchmark_section, replace_markdown_section,
                             run_demo)

SECTION = 'Synthetic adaptation benchmark'


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--modalities', nargs='+', choices=MODALITIES, default=list(MODALITIES))
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument('--skip-ablations', action='store_true',
                        help='run source-only, MADM, oracle and the target-BN tests only')
    parser.add_argument('--shared-prior', action='store_true',
                        help="every seed starts from seed 0's prior (default: each seed "
                        'pretrains its own)')
    parser.add_argument('--data-root', default='data/demo', help='synthetic data folder')
    parser.add_argument('--work-dir', default='work_dirs/demo', help='runs, logs and results')
    parser.add_argument('--out', default='docs/benchmarks.md',
                        help=f'markdown file whose "{SECTION}" section is (re)written')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    variants = (DEMO_VARIANTS + tuple(TEST_ONLY_VARIANTS)
                + (() if args.skip_ablations else ABLATION_VARIANTS))
    results: dict[str, dict[int, dict[str, dict]]] = {}
    for modality in args.modalities:
        for seed in args.seeds:
            print(f'== {modality}, seed {seed}', flush=True)
            results.setdefault(modality, {})[seed] = run_demo(
                modality, args.data_root, args.work_dir, variants, seed=seed,
                prior_seed=0 if args.shared_prior else seed,
                echo=lambda line: print(line, flush=True))
    machine = (f'{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch '
               f'threads, Python {platform.python_version()}, torch {torch.__version__}')
    command = ' '.join(shlex.quote(a) for a in ['python', 'tools/benchmark_synthetic.py',
                                                 *sys.argv[1:]])
    with_prior = [m for m in results if demo_uses_prior(m, args.data_root)]
    note = ''
    if with_prior:
        verb = 'starts' if len(with_prior) == 1 else 'start'
        note = (f'{" and ".join(with_prior).capitalize()} {verb} from the tiny SD prior that '
                'tools/demo.py pretrains without labels on the demo\'s train images, '
                + ("seed 0's prior for every seed" if args.shared_prior else
                   'one prior per seed, pretrained with that seed')
                + '; the others from random weights.')
    section = format_benchmark_section(results, command, machine, setup_note=note)
    print(section, flush=True)
    existing = open(args.out).read() if osp.isfile(args.out) else '# Benchmarks\n'
    atomic_write_text(args.out, replace_markdown_section(existing, SECTION, section))
    print(f'wrote the "{SECTION}" section of {args.out}', flush=True)


if __name__ == '__main__':
    main()
