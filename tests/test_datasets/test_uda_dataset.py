"""UDADataset: pairing, metainfo, rare-class sampling and collation (method.md §7)."""
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch
from mmcv.transforms import LoadImageFromFile
from mmengine.dataset import pseudo_collate
from mmseg.datasets import BaseSegDataset
from mmseg.datasets.transforms import LoadAnnotations, PackSegInputs
from mmseg.registry import DATASETS, MODELS
from PIL import Image

from madm.datasets import UDADataset
from madm.datasets.transforms import MapLabels
from madm.datasets.uda_dataset import rcs_class_probabilities
from madm.utils import MissingDataError

META = dict(classes=('a', 'b', 'c'), palette=[[0, 0, 0], [10, 10, 10], [20, 20, 20]])
SIZE = 16
# Source labels (16x16): 'left0' all class 0; 'half' left half 0, right half 2; 'ones' all 1.
SOURCE_LABELS = {
    'left0': np.zeros((SIZE, SIZE), np.uint8),
    'half': np.concatenate([np.zeros((SIZE, SIZE // 2)), np.full((SIZE, SIZE // 2), 2)], 1).astype(np.uint8),
    'ones': np.ones((SIZE, SIZE), np.uint8),
}


class HalfCrop:
    """Deterministic stand-in for RandomCrop: alternates the left and right 16x8 halves."""

    def __init__(self):
        self.calls = 0

    def __call__(self, results: dict) -> dict:
        x0 = 0 if self.calls % 2 == 0 else SIZE // 2
        self.calls += 1
        results['img'] = results['img'][:, x0:x0 + SIZE // 2]
        results['gt_seg_map'] = results['gt_seg_map'][:, x0:x0 + SIZE // 2]
        results['img_shape'] = results['img'].shape[:2]
        return results


def _write_stats(root: str) -> None:
    """DAFormer's files: string class keys, [file, n] lists, paths from another machine."""
    stats, with_class = [], {}
    for name, label in SOURCE_LABELS.items():
        file = f'/elsewhere/cityscapes/gtFine/train/city/{name}_gtFine_labelTrainIds.png'
        counts = {str(c): int((label == c).sum()) for c in np.unique(label)}
        stats.append(dict(counts, file=file))
        for c, n in counts.items():
            with_class.setdefault(c, []).append([file, n])
    with open(osp.join(root, 'sample_class_stats.json'), 'w') as f:
        json.dump(stats, f)
    with open(osp.join(root, 'samples_with_class.json'), 'w') as f:
        json.dump(with_class, f)


@pytest.fixture
def data_root(tmp_path) -> str:
    root = str(tmp_path)
    gen = np.random.default_rng(0)
    for name, label in SOURCE_LABELS.items():
        for sub, suffix, arr in (('leftImg8bit', '_leftImg8bit.png', gen.integers(0, 256, (SIZE, SIZE, 3))),
                                 ('gtFine', '_gtFine_labelTrainIds.png', label)):
            os.makedirs(osp.join(root, sub, 'train', 'city'), exist_ok=True)
            Image.fromarray(arr.astype(np.uint8)).save(osp.join(root, sub, 'train', 'city', name + suffix))
    os.makedirs(osp.join(root, 'target'))
    for i in range(2):
        Image.fromarray(np.full((SIZE // 2, SIZE // 2), 50 * i, np.uint8)).save(osp.join(root, 'target', f'{i}.png'))
    _write_stats(root)
    return root


def _source(root: str, crop: HalfCrop | None = None, label_map: dict | None = None) -> BaseSegDataset:
    pipeline = [LoadImageFromFile(), LoadAnnotations()]
    pipeline += [MapLabels(mapping=label_map)] if label_map else []
    pipeline += [crop] if crop else []
    return BaseSegDataset(
        data_root=root, metainfo=META, img_suffix='_leftImg8bit.png', seg_map_suffix='_gtFine_labelTrainIds.png',
        data_prefix=dict(img_path='leftImg8bit/train', seg_map_path='gtFine/train'),
        pipeline=pipeline + [PackSegInputs()])


def _target_cfg(root: str, metainfo: dict = META) -> dict:
    return dict(type='BaseSegDataset', data_root=root, metainfo=metainfo, img_suffix='.png',
                data_prefix=dict(img_path='target'), pipeline=[LoadImageFromFile(), PackSegInputs()])


def _rcs(**kwargs) -> dict:
    return dict(dict(class_temp=0.01, min_pixels=100, min_crop_pixels=32, max_retries=10), **kwargs)


def test_rcs_class_probabilities_by_hand():
    stats = [{'0': 1, '1': 1, 'file': 'x'}, {'1': 2, 'file': 'y'}]
    probs = rcs_class_probabilities(stats, temperature=1.0)
    # f = (0.25, 0.75); softmax((0.75, 0.25)) = (1/(1+e^-0.5), 1/(1+e^0.5)); rarest first
    assert list(probs) == [0, 1]
    assert probs[0] == pytest.approx(1 / (1 + np.exp(-0.5)))
    assert probs[1] == pytest.approx(1 / (1 + np.exp(0.5)))


def test_pairing_length_and_metainfo(data_root):
    ds = DATASETS.build(dict(type='UDADataset', source=_source(data_root), target=_target_cfg(data_root)))
    # One cycle of a shuffling sampler draws each target once; max(3 source, 2 target)
    # drew target 0 twice and target 1 once.
    assert len(ds) == 2
    assert ds.metainfo['classes'] == META['classes']
    item = ds[3]
    assert set(item) == {'source', 'target'}
    assert osp.basename(item['target']['data_samples'].img_path) == '1.png'  # 3 mod 2
    assert 'gt_sem_seg' in item['source']['data_samples']
    # Without RCS the source is drawn uniformly: every source image turns up.
    sources = [osp.basename(ds[0]['source']['data_samples'].img_path) for _ in range(60)]
    assert {s: sources.count(s) > 5 for s in set(sources)} == {
        'half_leftImg8bit.png': True, 'left0_leftImg8bit.png': True, 'ones_leftImg8bit.png': True}
    assert 'gt_sem_seg' not in item['target']['data_samples']
    assert len(UDADataset(_source(data_root), _target_cfg(data_root), length=10)) == 10


def test_disagreeing_classes_raise(data_root):
    other = dict(classes=('a', 'b', 'z'), palette=META['palette'])
    with pytest.raises(ValueError, match='classes disagree'):
        UDADataset(_source(data_root), _target_cfg(data_root, other))


def test_missing_stats_name_the_converter(data_root, tmp_path):
    with pytest.raises(MissingDataError, match='data_converters/cityscapes.py'):
        UDADataset(_source(data_root), _target_cfg(data_root),
                   rare_class_sampling=_rcs(stats_dir=str(tmp_path / 'nowhere')))


def test_rcs_picks_the_rare_class_and_recrops(data_root):
    crop = HalfCrop()
    ds = UDADataset(_source(data_root, crop), _target_cfg(data_root), rare_class_sampling=_rcs())
    assert len(ds) == 2  # the target's size: RCS draws the source
    # class 2 holds 1/6 of the pixels: with T=0.01 it is drawn with p ~ 1 - 1e-7, and only
    # 'half' has > 100 of its pixels. The first (left) crop has none, the second has 128.
    item = ds[0]
    sample = item['source']['data_samples']
    assert sample.rcs_class == 2
    assert osp.basename(sample.img_path) == 'half_leftImg8bit.png'
    assert crop.calls == 2
    assert int((sample.gt_sem_seg.data == 2).sum()) == 128


def test_rcs_keeps_the_last_crop_after_max_retries(data_root):
    crop = HalfCrop()
    ds = UDADataset(_source(data_root, crop), _target_cfg(data_root),
                    rare_class_sampling=_rcs(min_crop_pixels=128))  # strictly more than 128: never met
    sample = ds[0]['source']['data_samples']
    assert crop.calls == 11  # 1 + max_retries
    assert int((sample.gt_sem_seg.data == 2).sum()) == 0  # the 11th run is the left half


def test_rcs_compares_mapped_ids_with_class_map(data_root):
    # The pipeline maps stats id 2 -> label id 1 (a merge, like terrain -> vegetation).
    mapping = {0: 0, 1: 1, 2: 1}
    crop = HalfCrop()
    ds = UDADataset(_source(data_root, crop, mapping), _target_cfg(data_root),
                    rare_class_sampling=_rcs(class_map=mapping))
    sample = ds[0]['source']['data_samples']
    assert crop.calls == 2 and int((sample.gt_sem_seg.data == 1).sum()) == 128
    # Without class_map the packed labels never hold id 2: every retry is spent.
    crop = HalfCrop()
    ds = UDADataset(_source(data_root, crop, mapping), _target_cfg(data_root), rare_class_sampling=_rcs())
    ds[0]
    assert crop.calls == 11


def test_rcs_is_reproducible_from_the_torch_seed(data_root):
    def classes(seed: int) -> list[int]:
        ds = UDADataset(_source(data_root), _target_cfg(data_root), rare_class_sampling=_rcs(class_temp=1.0))
        torch.manual_seed(seed)  # what mmengine's randomness.seed does; workers derive from it
        return [ds[i]['source']['data_samples'].rcs_class for i in range(12)]

    np_state = np.random.get_state()[1].copy()
    first = classes(1)
    assert first == classes(1)
    assert len(set(first)) > 1  # T=1 spreads the draws
    assert first != classes(2)
    assert np.array_equal(np.random.get_state()[1], np_state)  # the global numpy RNG is never used


def test_rcs_without_eligible_images_is_a_clear_error(data_root):
    with pytest.raises(ValueError, match='min_pixels'):
        UDADataset(_source(data_root), _target_cfg(data_root), rare_class_sampling=_rcs(min_pixels=10**6))


def test_pseudo_collate_and_preprocessor(data_root):
    crop = HalfCrop()
    ds = UDADataset(_source(data_root, crop), _target_cfg(data_root))
    batch = pseudo_collate([ds[0], ds[1]])
    assert set(batch) == {'source', 'target'}
    assert set(batch['source']) == {'inputs', 'data_samples'} and set(batch['target']) == {'inputs', 'data_samples'}
    assert len(batch['source']['inputs']) == 2 and len(batch['target']['data_samples']) == 2
    assert batch['source']['inputs'][0].shape == (3, SIZE, SIZE // 2)
    pre = MODELS.build(dict(type='UDASegDataPreProcessor', mean=[0, 0, 0], std=[255, 255, 255], bgr_to_rgb=True,
                            size=(SIZE, SIZE // 2)))
    out = pre(batch, training=True)
    assert out['inputs']['source'].shape == (2, 3, SIZE, SIZE // 2)
    assert out['inputs']['target'].shape == (2, 3, SIZE, SIZE // 2)
    # target 1.png is 8x8 grey 50, padded with 0 to the configured (16, 8)
    torch.testing.assert_close(out['inputs']['target'][1, :, :SIZE // 2], torch.full((3, SIZE // 2, SIZE // 2), 50 / 255))
    assert out['inputs']['target'][1, :, SIZE // 2:].eq(0).all()
