"""TargetBNStatisticsHook in a two-process test (gloo, torchrun, tools/test.py)."""
import json
import os.path as osp
import re

import pytest

from _helpers import REPO_ROOT, free_port, run_tool, write_tiny_seg_dataset

TINY_MADM = osp.join(REPO_ROOT, 'tests', 'data', 'configs', 'tiny_madm.py')
pytestmark = pytest.mark.slow


def _test_config(path: str, target: str) -> str:
    """tiny_madm.py tested with the hook on the target's 4 unlabelled train images."""
    with open(path, 'w') as f:
        f.write(f'''_base_ = [{TINY_MADM!r}]
# as the shipped *_adabn.py configs: the base's hooks, then this one
custom_hooks = [dict(type='WeightsOnlyCheckpointHook'), dict(type='RNGStateHook'),
                dict(type='MergedParamGroupsSchedulerStateHook'),
                dict(type='UDAVisualizationHook', interval=2, tile_size=32), dict(
    type='TargetBNStatisticsHook',
    dataloader=dict(
        batch_size=1, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=dict(type='BaseSegDataset', metainfo=dict(classes=('a', 'b', 'c')),
                     img_suffix='.png', data_root={target!r},
                     data_prefix=dict(img_path='img_dir/train'),
                     pipeline=[dict(type='LoadImageFromFile'), dict(type='PackSegInputs')])))]
test_dataloader = dict(dataset=dict(data_root={target!r}))
''')
    return path


def test_two_processes_score_like_one_with_averaged_statistics(tmp_path):
    source = write_tiny_seg_dataset(str(tmp_path / 'src'), seed=0)
    target = write_tiny_seg_dataset(str(tmp_path / 'tgt'), seed=1)
    train_dir = str(tmp_path / 'train')
    run_tool(['tools/train.py', TINY_MADM, '--work-dir', train_dir, '--cfg-options',
              'train_cfg.max_iters=2', 'train_cfg.val_interval=3',
              f'train_dataloader.dataset.source.data_root={source}',
              f'train_dataloader.dataset.target.data_root={target}',
              f'val_dataloader.dataset.data_root={target}'])
    config = _test_config(str(tmp_path / 'tiny_madm_target_bn.py'), target)
    checkpoint = osp.join(train_dir, 'iter_2.pth')

    # torchrun gives each worker one thread; the same here, so both runs compute alike
    one = run_tool(['tools/test.py', config, checkpoint, '--work-dir', str(tmp_path / 'one'),
                    '--out', str(tmp_path / 'one.json')], env={'OMP_NUM_THREADS': '1'})
    two = run_tool(['-m', 'torch.distributed.run', '--nproc_per_node=2',
                    '--master_addr=127.0.0.1', f'--master_port={free_port()}',
                    'tools/test.py', config, checkpoint, '--launcher', 'pytorch',
                    '--work-dir', str(tmp_path / 'two'), '--out', str(tmp_path / 'two.json')],
                   timeout=300)

    assert re.search(r're-estimated on 4 target batches', one.stdout + one.stderr)
    # rank 0's log (the one mmengine prints): its half, before the halves are averaged
    assert re.search(r're-estimated on 2 target batches', two.stdout + two.stderr)
    with open(tmp_path / 'one.json') as f:
        single = json.load(f)
    with open(tmp_path / 'two.json') as f:
        distributed = json.load(f)
    # The same statistics up to float rounding, so the same predictions: without the
    # cross-process average each process would score its test image with its own half.
    assert distributed['IoU'] == pytest.approx(single['IoU'], abs=0.05)
    assert distributed['mIoU'] == pytest.approx(single['mIoU'], abs=0.05)
