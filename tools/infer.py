"""Segment images, an image folder or a DSEC event recording with a trained model.

    python tools/infer.py CONFIG CKPT INPUT --out-dir DIR [--device cpu] [--opacity 0.5] \\
        [--event-representation edge] [--timestamps TS.txt | --window-ms 50] \\
        [--cfg-options KEY=VALUE ...]

INPUT is an image, a folder of images, or a DSEC ``events.h5`` (``rectify_map.h5``
beside it). Event recordings are rendered on the fly with the DSEC converter's code:
with ``--timestamps`` (DSEC-Semantic's ``<seq>_semantic_timestamps.txt``) frame i >= 1
holds the events of [ts[i-1], ts[i]), exactly the frames MADM trains and tests on;
without it, consecutive ``--window-ms`` windows from the start of the recording.
For every input, DIR gets ``<name>_mask.png`` (task palette) and ``<name>_overlay.png``;
event frames are named ``<sequence>_<index:06d>``.
"""
import argparse

import madm  # noqa: F401  isort: skip
import torch
from mmengine.config import DictAction

from madm.apis.inference import load_segmentor, run_inference


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Segment images or DSEC events with a model')
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('input', help='an image, a folder of images, or a DSEC events.h5')
    parser.add_argument('--out-dir', required=True, help='where masks and overlays are written')
    parser.add_argument('--device', default='cuda:0' if torch.cuda.is_available() else 'cpu',
                        help='torch device (default: cuda:0 if available, else cpu)')
    parser.add_argument('--opacity', type=float, default=0.5,
                        help='weight of the mask in the overlay, in [0, 1]')
    parser.add_argument('--event-representation', choices=['edge', 'histogram', 'voxel'],
                        default='edge', help='event rendering (use the one trained on)')
    windows = parser.add_mutually_exclusive_group()
    windows.add_argument('--timestamps',
                         help='DSEC-Semantic timestamps file: one frame per label window')
    windows.add_argument('--window-ms', type=float, default=50.0,
                         help='fixed event window without --timestamps (ms)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. '
                        'model.backbone.pretrained=/weights/sd-v1-4')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    model = load_segmentor(args.config, args.checkpoint, args.device, args.cfg_options)
    run_inference(model, args.input, args.out_dir, opacity=args.opacity,
                  event_representation=args.event_representation,
                  timestamps_path=args.timestamps, window_ms=args.window_ms)


if __name__ == '__main__':
    main()
