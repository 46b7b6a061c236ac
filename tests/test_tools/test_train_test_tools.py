"""tools/train.py -> checkpoint -> tools/test.py and --resume, each in a fresh interpreter.

No TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD anywhere: checkpoints must load under torch's
default weights_only=True.
"""
import json
import os
import os.path as osp
import re

import pytest
import torch

from _helpers import REPO_ROOT, run_tool

CONFIG = osp.join(REPO_ROOT, 'tests', 'data', 'configs', 'tiny_encoder_decoder.py')

pytestmark = pytest.mark.slow


def _scalars(work_dir: str) -> list[dict]:
    paths = [osp.join(dp, f) for dp, _, fs in os.walk(work_dir) for f in fs
             if f == 'scalars.json']
    assert paths, f'no scalars.json under {work_dir}'
    with open(sorted(paths)[-1]) as f:
        return [json.loads(line) for line in f]


def test_train_then_test_then_resume(tiny_seg_dataset, tmp_path):
    work_dir = str(tmp_path / 'work')
    run_tool(['tools/train.py', CONFIG, '--work-dir', work_dir,
              '--cfg-options', f'data_root={tiny_seg_dataset}',
              f'train_dataloader.dataset.data_root={tiny_seg_dataset}',
              f'val_dataloader.dataset.data_root={tiny_seg_dataset}',
              f'test_dataloader.dataset.data_root={tiny_seg_dataset}'])
    ckpt = osp.join(work_dir, 'iter_2.pth')
    assert osp.isfile(ckpt)
    # The checkpoint loads with torch's safe default.
    state = torch.load(ckpt, map_location='cpu', weights_only=True)
    assert state['meta']['iter'] == 2
    val = [r for r in _scalars(work_dir) if 'mIoU' in r][-1]

    out_json = str(tmp_path / 'results.json')
    proc = run_tool(['tools/test.py', CONFIG, ckpt, '--work-dir', str(tmp_path / 'test'),
                     '--out', out_json, '--cfg-options',
                     f'test_dataloader.dataset.data_root={tiny_seg_dataset}'])
    table = [line for line in proc.stdout.splitlines() if line.startswith('| result')]
    assert table, proc.stdout[-2000:]
    with open(out_json) as f:
        results = json.load(f)
    # The reloaded model reproduces the end-of-training validation exactly.
    assert results['mIoU'] == pytest.approx(val['mIoU'])
    assert results['aAcc'] == pytest.approx(val['aAcc'])
    assert f"{results['mIoU']:.2f}" in table[0]
    assert set(results['IoU']) == {'a', 'b', 'c'}

    # Resume from the work dir (latest checkpoint) and train one more iteration.
    proc = run_tool(['tools/train.py', CONFIG, '--work-dir', work_dir, '--resume',
                     '--cfg-options', 'train_cfg.max_iters=3',
                     f'train_dataloader.dataset.data_root={tiny_seg_dataset}',
                     f'val_dataloader.dataset.data_root={tiny_seg_dataset}'])
    log = proc.stdout + proc.stderr
    assert re.search(r'resumed epoch: 0, iter: 2', log), log[-3000:]
    assert osp.isfile(osp.join(work_dir, 'iter_3.pth'))


def test_mmseg_packaged_train_script_runs_a_madm_config(tiny_seg_dataset, tmp_path):
    """mmseg's own tools/train.py (which never imports madm) works through custom_imports."""
    import mmseg
    script = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools', 'train.py')
    work_dir = str(tmp_path / 'mmseg_tool')
    run_tool([script, CONFIG, '--work-dir', work_dir, '--cfg-options', 'train_cfg.max_iters=1',
              'train_cfg.val_interval=1',
              f'train_dataloader.dataset.data_root={tiny_seg_dataset}',
              f'val_dataloader.dataset.data_root={tiny_seg_dataset}'])
    assert osp.isfile(osp.join(work_dir, 'iter_1.pth'))
