"""Helpers shared by the tests (imported as `_helpers`; tests/ is on sys.path)."""
import os
import os.path as osp
import socket
import subprocess
import sys

import numpy as np
import pytest

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
