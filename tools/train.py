"""Train a segmentor (MADM or any mmseg model) from a config file.

    python tools/train.py configs/madm/rgb2event.py [--work-dir DIR] [--resume [CKPT]] [--amp] \\
        [--compile]

Same arguments as MMSegmentation's ``tools/train.py``; madm is imported first so
its modules are registered and the mmcv-lite shim precedes mmseg. ``--compile`` adds
:class:`madm.engine.hooks.CompileModulesHook` with its defaults (the UNet block by
block, the decode heads and the VAE, compiled in place); set the hook in the config's
``custom_hooks`` for other modules or modes.
"""
import argparse
import logging
import os
import os.path as osp

import madm  # noqa: F401  isort: skip
from mmengine.config import Config, DictAction
from mmengine.logging import print_log
from mmengine.runner import Runner

from madm.utils.distributed import close_distributed, setup_cpu_distributed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a madm / mmseg segmentor')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and checkpoints')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from CKPT, or from the latest checkpoint in the work dir when no '
        'path is given')
    parser.add_argument('--amp', action='store_true', default=False,
                        help='enable automatic mixed precision (AmpOptimWrapper)')
    parser.add_argument(
        '--compile', action='store_true', default=False,
        help='torch.compile the UNet block by block, the decode heads and the VAE in place '
        '(CompileModulesHook); the first iterations are slow while they compile')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, e.g. train_cfg.max_iters=100 '
        'model.backbone.pretrained=/weights/sd-v1-4')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def build_config(args: argparse.Namespace) -> Config:
    """The config file with the command line's options applied."""
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)

    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])

    if args.amp:
        optim_wrapper = cfg.optim_wrapper.type
        if optim_wrapper == 'AmpOptimWrapper':
            print_log('AMP training is already enabled in your config.', logger='current',
                      level=logging.WARNING)
        else:
            assert optim_wrapper == 'OptimWrapper', (
                f'`--amp` is only supported when the optimizer wrapper type is `OptimWrapper`, '
                f'but got {optim_wrapper}.')
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'

    if args.compile:
        hooks = cfg.get('custom_hooks') or []
        if any(hook.get('type') == 'CompileModulesHook' for hook in hooks):
            print_log('CompileModulesHook is already in your config; --compile adds nothing.',
                      logger='current', level=logging.WARNING)
        else:
            cfg.custom_hooks = [*hooks, dict(type='CompileModulesHook')]

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def main() -> None:
    cfg = build_config(parse_args())
    setup_cpu_distributed(cfg)
    runner = Runner.from_cfg(cfg)
    runner.train()
    del runner  # close_distributed collects it, with the DDP reducer that holds the group
    close_distributed()


if __name__ == '__main__':
    main()
