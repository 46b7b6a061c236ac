"""Rule-based split lists reproduce MADM's reference json lists (method.md §8.1).

The folder trees are built from the reference file names (empty files, plus the
frames/labels the rules must leave out); the lists themselves are never copied
into the repository.
"""
import json
import os
import os.path as osp

import pytest

from madm.datasets.splits import (cityscapes_split, deliver_split, dsec_split, fmb_split,
                                  reference_sort_key)
from madm.utils.paths import MissingDataError

REF_DIR = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), '..', 'shared',
                   'reference', 'madm_splits')


def _reference(name: str) -> dict:
    path = osp.join(REF_DIR, f'Cityscapes_RGB_to_{name}.json')
    if not osp.isfile(path):
        pytest.skip(f'reference split lists not found at {osp.normpath(REF_DIR)}')
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def _touch(root, rel_paths):
    for rel in rel_paths:
        path = osp.join(root, rel)
        os.makedirs(osp.dirname(path), exist_ok=True)
        open(path, 'wb').close()


def test_reference_sort_key_orders_like_windows_paths():
    paths = ['d/MAP_1_point12/1.png', 'd/MAP_1_point122/1.png', 'd/MAP_1_point12_x/1.png']
    assert sorted(paths, key=reference_sort_key) == [paths[1], paths[0], paths[2]]


def test_cityscapes_train_matches_reference(tmp_path):
    src = _reference('DELIVER_Depth_train')['source_data']
    _touch(tmp_path, src['RGB'] + src['label'])
    _touch(tmp_path, ['gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png'])
    entries = cityscapes_split(str(tmp_path), 'train')
    assert [e[0] for e in entries] == src['RGB']
    assert [e[1] for e in entries] == src['label']


def test_deliver_matches_reference(tmp_path):
    train = _reference('DELIVER_Depth_train')['target_data']
    test = _reference('DELIVER_Depth_test')['target_data']
    _touch(tmp_path, train['second_modality'] + test['second_modality'] + test['label'])
    assert [e[0] for e in deliver_split(str(tmp_path), 'train', label_dir=None)] == \
        train['second_modality']
    entries = deliver_split(str(tmp_path), 'test')
    assert [e[0] for e in entries] == test['second_modality']
    assert [e[1] for e in entries] == test['label']


def test_fmb_matches_reference(tmp_path):
    train = _reference('FMB_Infrared_train')['target_data']
    test = _reference('FMB_Infrared_test')['target_data']
    _touch(tmp_path, train['second_modality'] + test['second_modality'] + test['label'])
    assert [e[0] for e in fmb_split(str(tmp_path), 'train', label_dir=None)] == \
        train['second_modality']
    entries = fmb_split(str(tmp_path), 'test')
    assert [e[0] for e in entries] == test['second_modality']
    assert [e[1] for e in entries] == test['label']


def test_dsec_frame_rule_matches_reference(tmp_path):
    # Three sequences keep the tree small; the rule is per sequence.
    keep = ('zurich_city_02_a', 'zurich_city_04_a', 'zurich_city_13_a')
    train = [p for p in _reference('DSEC_Event_train')['target_data']['second_modality']
             if p.split('/')[1] in keep]
    ref_test = _reference('DSEC_Event_test')['target_data']
    test = {k: [p for p in v if p.split('/')[1] in keep] for k, v in ref_test.items()}
    assert len(train) == 117 + 350 and len(test['label']) == 378
    # Write every frame 0..last of each sequence; the rule must pick MADM's subset.
    last: dict[str, int] = {}
    for rel in train + test['second_modality']:
        folder, name = rel.rsplit('/', 1)
        last[folder] = max(last.get(folder, 0), int(name[:6]))
    every = [f'{folder}/{i:06d}.png' for folder, n in last.items() for i in range(n + 1)]
    labels = [f'test_semantic_labels/{f.split("/")[1]}/11classes/{f.rsplit("/", 1)[1]}'
              for f in every if f.startswith('69mask_test_edges/')]
    _touch(tmp_path, every + labels)
    assert [e[0] for e in dsec_split(str(tmp_path), 'train', label_dir=None)] == train
    entries = dsec_split(str(tmp_path), 'test')
    assert [e[0] for e in entries] == test['second_modality']
    assert [e[1] for e in entries] == test['label']


def test_hidden_files_and_folders_are_not_samples(fmb_root, dsec_root):
    # a converter killed mid-write leaves .tmp-*.png; macOS unzips leave ._name.png
    _touch(fmb_root, ['train/Infrared/.tmp-abc.png', 'train/Infrared/._00001.png',
                      'train/Label/.tmp-abc.png'])
    assert [e[0] for e in fmb_split(fmb_root, 'train')] == \
        ['train/Infrared/00001.png', 'train/Infrared/00002.png']
    _touch(dsec_root, ['69mask_test_edges/zurich_city_13_a/.tmp-1f2e.png',
                       '69mask_test_edges/.ipynb_checkpoints/000002.png'])
    assert [e[0] for e in dsec_split(dsec_root, 'test', label_dir=None)] == \
        [f'69mask_test_edges/zurich_city_13_a/{i:06d}.png' for i in (1, 2, 3)]


def test_fmb_errors_describe_both_layouts(tmp_path):
    root = str(tmp_path)
    _touch(root, ['Infrared/00001.png', 'Label/00001.png'])
    with pytest.raises(MissingDataError) as exc:
        fmb_split(root, 'train')
    msg = str(exc.value)
    assert osp.join(root, 'train', 'Infrared') in msg and '(missing)' in msg
    assert f"{osp.join(root, 'Infrared')!r} (found)" in msg
    assert f"{osp.join(root, 'train.txt')!r} (missing)" in msg
    (tmp_path / 'train.txt').write_text('\n\n')
    with pytest.raises(MissingDataError, match='lists no file stems') as exc:
        fmb_split(root, 'train')
    assert osp.join(root, 'train.txt') in str(exc.value)
    assert osp.join(root, 'train', 'Infrared') not in str(exc.value)  # not used by this layout
    (tmp_path / 'train.txt').write_text('00001\n')
    assert fmb_split(root, 'train') == [('Infrared/00001.png', 'Label/00001.png')]
