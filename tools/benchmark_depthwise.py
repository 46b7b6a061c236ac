"""Time the DAFormer head's dilated depthwise convolution per memory format (issue 8).

    python tools/benchmark_depthwise.py --device cuda --out depthwise.json
    python tools/benchmark_depthwise.py --device cpu --channels 64 --size 64 64 --iters 3

Defaults are MADM's full-size fusion: N=2, C=1024, 512x512, dilations 6/12/18, bf16 autocast.
Prints a markdown table; the error columns compare each implementation with fp32 on the same
bf16-rounded inputs. Logic in madm/utils/depthwise_benchmark.py.
"""
import argparse

import madm  # noqa: F401  isort: skip
from madm.utils import atomic_write_json
from madm.utils.depthwise_benchmark import (DEPTHWISE_IMPLS, as_dicts, benchmark_depthwise,
                                            format_depthwise_markdown)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', choices=('cuda', 'cpu'), default='cuda')
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--channels', type=int, default=1024)
    parser.add_argument('--size', type=int, nargs=2, default=(512, 512), metavar=('H', 'W'))
    parser.add_argument('--dilations', type=int, nargs='+', default=(6, 12, 18))
    parser.add_argument('--impls', nargs='+', choices=DEPTHWISE_IMPLS, default=None,
                        help='default: both on a GPU, conv on a CPU (channels-last bf16 '
                        'depthwise convolutions are broken in torch 2.13 on CPUs)')
    parser.add_argument('--amp', choices=('bf16', 'fp16', 'none'), default='bf16')
    parser.add_argument('--iters', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--out', help='write the results as JSON here')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark, print its table and return the results as dicts."""
    args = parse_args(argv)
    results = benchmark_depthwise(batch=args.batch, channels=args.channels,
                                  size=tuple(args.size), dilations=args.dilations,
                                  impls=args.impls, device=args.device, amp=args.amp,
                                  iters=args.iters, warmup=args.warmup)
    print(format_depthwise_markdown(results))
    rows = as_dicts(results)
    if args.out:
        atomic_write_json(args.out, rows)
    return rows


if __name__ == '__main__':
    main()
