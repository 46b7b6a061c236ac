"""Compare several runs in one benchmark table (per-class IoU, mIoU, mAcc, aAcc).

    python tools/benchmark_table.py WORK_DIR_OR_JSON [...] [--names A B ...] [--out table.md]

Each argument is a work dir or a metrics file. A work dir's metrics come from the
``tools/test.py --out`` JSON at its top level, else from the last validation in its
newest ``<timestamp>/vis_data/scalars.json``. The markdown table is printed; ``--out``
also writes it as markdown (``.md``) or CSV (``.csv``).
"""
import argparse

import madm  # noqa: F401  isort: skip
from mmengine.logging import print_log

from madm.apis.benchmark_table import benchmark_markdown, gather_runs, write_benchmark_table


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Gather runs into one benchmark table')
    parser.add_argument('runs', nargs='+', help='work dirs or metrics JSON files')
    parser.add_argument('--names', nargs='+', help='row names, one per run (default: dir names)')
    parser.add_argument('--out', help='also write the table here (.md or .csv)')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    runs, classes = gather_runs(args.runs, args.names)
    for name, run in runs.items():
        print_log(f'{name}: {run.source}', logger='current')
    print(benchmark_markdown(runs, classes), flush=True)
    if args.out:
        write_benchmark_table(runs, classes, args.out)


if __name__ == '__main__':
    main()
