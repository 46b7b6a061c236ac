"""Tiny dataset trees in the real on-disk formats (data-formats.md §8.3)."""
import os
import os.path as osp

import numpy as np
import pytest
from mmengine.registry import init_default_scope
from PIL import Image


@pytest.fixture(autouse=True)
def mmseg_scope():
    """Pipelines name mmseg and madm transforms, as configs with default_scope='mmseg' do."""
    init_default_scope('mmseg')


def save_png(path: str, array: np.ndarray) -> str:
    os.makedirs(osp.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path)
    return path


# Every Cityscapes trainId once per row, then 255.
CS_LABEL = np.array([list(range(19)) + [255]] * 4, np.uint8)  # (4, 20)


@pytest.fixture
def cityscapes_root(tmp_path):
    root = str(tmp_path / 'cityscapes')
    rng = np.random.default_rng(0)
    for city, idx in (('aachen', 0), ('aachen', 1), ('bremen', 0)):
        stem = f'{city}_{idx:06d}_000019'
        save_png(f'{root}/leftImg8bit/train/{city}/{stem}_leftImg8bit.png',
                 rng.integers(0, 255, (4, 20, 3), dtype=np.uint8))
        save_png(f'{root}/gtFine/train/{city}/{stem}_gtFine_labelTrainIds.png', CS_LABEL)
    return root


@pytest.fixture
def deliver_root(tmp_path):
    root = str(tmp_path / 'DELIVER')
    raw = np.zeros((6, 6, 3), np.uint8)
    raw[..., 0] = np.arange(36).reshape(6, 6) % 26     # R = class id + 1, G = B = 0
    raw[0, 0, 0] = 255
    for cond in ('cloud', 'sun'):
        for split, scene in (('train', 'MAP_1_point2'), ('test', 'MAP_10_point102'),
                             ('test', 'MAP_10_point102_motionblur')):
            for frame in ('045050', '045100'):
                rel = f'{cond}/{split}/{scene}/{frame}'
                save_png(f'{root}/depth/{rel}_depth_front.png',
                         np.repeat(np.linspace(0, 255, 36, dtype=np.uint8).reshape(6, 6)[..., None],
                                   3, axis=2))
                save_png(f'{root}/semantic/{rel}_semantic_front.png', raw)
    return root


@pytest.fixture
def fmb_root(tmp_path):
    root = str(tmp_path / 'FMB')
    label = np.array([list(range(15)) + [255]] * 3, np.uint8)  # (3, 16)
    for split, ids in (('train', (1, 2)), ('test', (43, 44, 45))):
        for i in ids:
            save_png(f'{root}/{split}/Infrared/{i:05d}.png',
                     np.full((3, 16), 10 * i % 256, np.uint8))
            save_png(f'{root}/{split}/Visible/{i:05d}.png', np.zeros((3, 16, 3), np.uint8))
            save_png(f'{root}/{split}/Label/{i:05d}.png', label)
    return root


@pytest.fixture
def dsec_root(tmp_path):
    root = str(tmp_path / 'DSEC')
    for split, seq, n in (('train', 'zurich_city_00_a', 7), ('test', 'zurich_city_13_a', 4)):
        for i in range(n):
            save_png(f'{root}/69mask_{split}_edges/{seq}/{i:06d}.png',
                     np.full((8, 10), 127, np.uint8))
            if split == 'test':
                save_png(f'{root}/test_semantic_labels/{seq}/11classes/{i:06d}.png',
                         np.array([list(range(11)) + [255]] * 2 + [[0] * 12] * 6,
                                  np.uint8)[:, :10])
    return root
