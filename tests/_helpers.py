"""Helpers shared by the tests (imported as `_helpers`; tests/ is on sys.path)."""
import os
import os.path as osp
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def write_tiny_seg_dataset(root: str, num_train: int = 4, num_val: int = 2, size: int = 64,
                           seed: int = 0) -> str:
    """Write an mmseg img_dir/ann_dir dataset with 3 classes whose colour matches the label."""
    from madm.utils import atomic_write_image
    rng = np.random.default_rng(seed)
    colours = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]], np.uint8)
    for split, n in (('train', num_train), ('val', num_val)):
        for i in range(n):
            label = np.zeros((size, size), np.uint8)
            label[:, size // 3:] = 1
            label[size // 2:, 2 * size // 3:] = 2
            label = np.roll(label, rng.integers(0, size), axis=1)
            img = colours[label] + rng.integers(0, 30, (size, size, 3)).astype(np.uint8)
            atomic_write_image(osp.join(root, 'img_dir', split, f'{i:03d}.png'), img)
            atomic_write_image(osp.join(root, 'ann_dir', split, f'{i:03d}.png'), label)
    return root


def run_tool(args: list[str], cwd: str = REPO_ROOT, timeout: int = 600,
             env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a repo script in a fresh interpreter; fail the test with its output on error."""
    full_env = dict(os.environ)
    full_env.pop('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', None)  # checkpoints must load without it
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=full_env)
    if proc.returncode != 0:
        pytest.fail(f'{" ".join(args)} exited {proc.returncode}\n--- stdout ---\n'
                    f'{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-6000:]}')
    return proc


def free_port() -> int:
    """A TCP port that is free now on 127.0.0.1 (torchrun's --master_port)."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


class ParamwiseNet(nn.Module):
    """Six trainable parameters (and a frozen layer) that :func:`paramwise_wrapper_cfg`'s rules
    give three settings: decay, no decay (biases, norm), the head weight's 10x learning rate."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.norm = nn.GroupNorm(2, 8)
        self.head = nn.Linear(8, 4)
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.frozen(self.head(self.norm(self.conv(x)).mean((2, 3))))


def paramwise_wrapper_cfg(merged: bool, **optimizer) -> dict:
    """An AdamW ``optim_wrapper`` config with a ``paramwise_cfg`` and a gradient-norm clip,
    built by ``MergedParamGroupsOptimWrapperConstructor`` if ``merged``."""
    cfg = dict(type='OptimWrapper',
               optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05, **optimizer),
               paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0,
                                  custom_keys={'head.weight': dict(lr_mult=10.0)}),
               clip_grad=dict(max_norm=0.01, norm_type=2))
    if merged:
        cfg['constructor'] = 'MergedParamGroupsOptimWrapperConstructor'
    return cfg


def settings_by_param(model: nn.Module, wrapper) -> dict:
    """``{parameter name: (lr, weight_decay)}`` of each parameter in ``wrapper``'s groups."""
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: (g['lr'], g['weight_decay'])
            for g in wrapper.optimizer.param_groups for p in g['params']}
