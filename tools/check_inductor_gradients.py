"""Check whether torch.compile gets a tapped, then upsampled feature's gradients right.

    python tools/check_inductor_gradients.py --device cuda
    python tools/check_inductor_gradients.py --device cpu --backend aot_eager --shapes 64x4

Compares each parameter's gradient of ``madm.utils.inductor_check.TapThenUpsample``, compiled
and eager, in fp32, at each channels x size. The defaults are the tiny preset's tapped
transformer at 64x64 images (64 channels, 4x4) and SD-1.4's two upsampled taps at 512x512
(1280 channels at 16x16, 640 at 32x32). With PyTorch 2.13.0, inductor on a CPU got the first
two 95-100 % wrong and the third right: the fault depends on the shapes, so a shape that
passes proves little about another. On the same CPU, 2.14.1 got all three right, and 2.12.1
the first two (the third was not run). Where it shows, compile the UNet by block
(``madm.utils.compile_modules.UNET_BLOCK_MODULES``, the default of ``CompileModulesHook`` and
``tools/benchmark.py --compile``), not as one graph (``--compile-unet-whole``). Exits with
status 1 when a difference exceeds the tolerance.
"""
import argparse
import math
import sys

import torch

from madm.utils.inductor_check import compiled_gradient_error

# (channels, size): the tiny preset's tapped transformer at 64x64 images, SD-1.4's two
# upsampled taps at 512x512.
DEFAULT_SHAPES = ((64, 4), (1280, 16), (640, 32))


def _shape(text: str) -> tuple[int, int]:
    try:
        channels, size = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'expected CHANNELSxSIZE, e.g. 1280x16, got {text!r}') from None
    return channels, size


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cpu', help="'cpu' or 'cuda'")
    parser.add_argument('--backend', default='inductor', help="torch.compile's backend")
    parser.add_argument('--shapes', type=_shape, nargs='+',
                        default=list(DEFAULT_SHAPES),
                        help='CHANNELSxSIZE of the input, e.g. 1280x16 (default: '
                        f"{' '.join(f'{c}x{s}' for c, s in DEFAULT_SHAPES)})")
    parser.add_argument('--tolerance', type=float, default=1e-3,
                        help='largest relative gradient difference that passes')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(f'torch {torch.__version__}, {args.backend} on {args.device}, tolerance '
          f'{args.tolerance:g}')
    any_wrong = False
    for channels, size in args.shapes:
        errors = compiled_gradient_error(args.backend, args.device, channels, size)
        wrong = [name for name, error in errors.items() if not error <= args.tolerance]
        any_wrong |= bool(wrong)
        worst = max(errors, key=lambda name: math.inf if math.isnan(errors[name])
                    else errors[name])
        verdict = f'WRONG: {len(wrong)} of {len(errors)} gradients' if wrong else 'right'
        print(f'{channels} channels, {size}x{size}: {verdict} (largest {errors[worst]:.3g}, '
              f'{worst})')
    return 1 if any_wrong else 0


if __name__ == '__main__':
    sys.exit(main())
