"""MADM under DDP: 2 CPU processes on the gloo backend through torchrun and tools/train.py."""
import os.path as osp
import re

import pytest
import torch

from _helpers import REPO_ROOT, free_port, run_tool, write_tiny_seg_dataset

CONFIG = osp.join(REPO_ROOT, 'tests', 'data', 'configs', 'tiny_madm.py')
pytestmark = pytest.mark.slow


def test_two_iterations_on_two_gloo_processes(tmp_path):
    source = write_tiny_seg_dataset(str(tmp_path / 'src'), seed=0)
    target = write_tiny_seg_dataset(str(tmp_path / 'tgt'), seed=1)
    work_dir = str(tmp_path / 'work')
    proc = run_tool(['-m', 'torch.distributed.run', '--nproc_per_node=2', '--master_addr=127.0.0.1',
                     f'--master_port={free_port()}',
                     'tools/train.py', CONFIG, '--launcher', 'pytorch', '--work-dir', work_dir,
                     '--cfg-options', 'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
                     'train_dataloader.batch_size=1',
                     f'train_dataloader.dataset.source.data_root={source}',
                     f'train_dataloader.dataset.target.data_root={target}',
                     f'val_dataloader.dataset.data_root={target}'], timeout=300)
    log = proc.stdout + proc.stderr
    assert 'Iter(train) [2/2]' in log
    # Each rank saw one of the two validation images; the metric is gathered over both.
    assert re.search(r'Iter\(val\) \[1/1\].*mIoU', log)
    ckpt = torch.load(osp.join(work_dir, 'iter_2.pth'), map_location='cpu', weights_only=True)
    assert ckpt['meta']['iter'] == 2
    assert any(k.startswith('teacher.') for k in ckpt['state_dict'])
    assert not any(k.startswith('module.') for k in ckpt['state_dict'])
