"""Evaluate a checkpoint and print the benchmark table.

    python tools/test.py CONFIG CKPT [--out results.json|results.csv] [--show-dir DIR]

Arguments follow MMSegmentation's ``tools/test.py``, except that ``--out`` writes the
results table (JSON or CSV, by extension); raw predictions go to ``--pred-dir``, each named
by its image's path below the dataset's ``data_root``. ``--show``/``--show-dir`` draw on the
image as the model scored it (``ScoredSegVisualizationHook``).
"""
import argparse
import os
import os.path as osp

import madm  # noqa: F401  isort: skip
from mmengine.config import Config, DictAction
from mmengine.runner import Runner

from madm.evaluation import (check_results_table_path, format_markdown_table,
                             write_results_table)
from madm.utils.distributed import close_distributed, setup_cpu_distributed


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and evaluate) a madm / mmseg segmentor')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save logs and metrics')
    parser.add_argument('--out', help='write the results table here (.json or .csv)')
    parser.add_argument(
        '--pred-dir',
        help='save each prediction here as a PNG of class indices, at the path of its image '
             'below the dataset\'s data_root (DSEC: DIR/69mask_test_edges/<seq>/000001.png); '
             'with the reference protocol (ReferenceEvalResize) the masks are at the scored '
             '512x512, not at the image\'s size')
    parser.add_argument('--show', action='store_true', help='show prediction results')
    parser.add_argument('--show-dir', help='save painted predictions here')
    parser.add_argument('--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, e.g. test_dataloader.dataset.data_root=/data')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--tta', action='store_true', help='test time augmentation')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if args.out is not None:
        try:
            check_results_table_path(args.out)
        except ValueError as err:  # now, not after the whole test set has run
            parser.error(f'--out: {err}')
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def trigger_visualization_hook(cfg: Config, args: argparse.Namespace) -> Config:
    """Turn on the config's visualization hook (madm's ``ScoredSegVisualizationHook``)."""
    if 'visualization' not in cfg.default_hooks:
        raise RuntimeError("--show/--show-dir need default_hooks.visualization="
                           "dict(type='ScoredSegVisualizationHook') in the config")
    hook = cfg.default_hooks['visualization']
    hook['draw'] = True
    if args.show:
        hook['show'] = True
        hook['wait_time'] = args.wait_time
    if args.show_dir:
        cfg.visualizer['save_dir'] = args.show_dir
    return cfg


def use_tta(cfg: Config) -> Config:
    """Swap in the config's ``tta_pipeline`` and ``tta_model``; exit if it has none."""
    missing = [key for key in ('tta_pipeline', 'tta_model') if key not in cfg]
    if missing:
        # Checked before the runner is built, instead of an AttributeError from the config.
        raise SystemExit(f'--tta needs the config to define tta_pipeline and tta_model '
                         f'(missing: {", ".join(missing)}); see mmseg\'s '
                         f'configs/_base_/datasets/*.py for examples')
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.tta_model.module = cfg.model
    cfg.model = cfg.tta_model
    return cfg


def main() -> None:
    args = parse_args()
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint

    if args.show or args.show_dir:
        cfg = trigger_visualization_hook(cfg, args)
    if args.tta:
        cfg = use_tta(cfg)
    if args.pred_dir is not None:
        cfg.test_evaluator['output_dir'] = args.pred_dir
        cfg.test_evaluator['keep_results'] = True
        # ClassIoUMetric names each mask by its image's path below data_root.
        cfg.test_evaluator['data_root'] = cfg.test_dataloader.dataset.get('data_root')

    setup_cpu_distributed(cfg)
    runner = Runner.from_cfg(cfg)
    metrics = runner.test()
    if runner.rank == 0:
        class_names = runner.test_dataloader.dataset.metainfo['classes']
        print(format_markdown_table(metrics, class_names), flush=True)
        if args.out:
            write_results_table(metrics, class_names, args.out)
    del runner  # close_distributed collects it, with the DDP reducer that holds the group
    close_distributed()


if __name__ == '__main__':
    main()
