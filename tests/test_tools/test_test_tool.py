"""tools/test.py: argument checks that fail before the test set runs, and --show-dir /
--pred-dir on a test pipeline that squashes images (ReferenceEvalResize)."""
import importlib.util
import os
import os.path as osp
import sys

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

from _helpers import REPO_ROOT, run_tool
from madm.utils import atomic_write_image

CONFIG = osp.join(REPO_ROOT, 'tests', 'data', 'configs', 'tiny_encoder_decoder.py')


def _load_tool():
    spec = importlib.util.spec_from_file_location(
        '_madm_tool_test', osp.join(REPO_ROOT, 'tools', 'test.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('out', ['results.txt', 'results', 'results.md'])
def test_bad_out_extension_is_rejected_while_parsing(out, monkeypatch, capsys):
    monkeypatch.setattr(sys, 'argv', ['test.py', CONFIG, 'ckpt.pth', '--out', out])
    with pytest.raises(SystemExit) as exc:
        _load_tool().parse_args()
    assert exc.value.code == 2
    assert '.json or .csv' in capsys.readouterr().err


@pytest.mark.parametrize('out', ['r.json', 'r.CSV'])
def test_good_out_extension_parses(out, monkeypatch):
    monkeypatch.setattr(sys, 'argv', ['test.py', CONFIG, 'ckpt.pth', '--out', out])
    assert _load_tool().parse_args().out == out


def test_tta_without_tta_config_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, 'argv', ['test.py', CONFIG, 'ckpt.pth', '--tta',
                                      '--work-dir', str(tmp_path)])
    with pytest.raises(SystemExit, match='tta_pipeline.*tta_model'):
        _load_tool().main()


def _write_sequences(root: str, size_hw=(40, 72)) -> None:
    """Two sequences whose frames share basenames, as DSEC's test frames do."""
    rng = np.random.default_rng(0)
    for seq in ('seq_a', 'seq_b'):
        for i in range(2):
            img = rng.integers(0, 255, (*size_hw, 3), dtype=np.uint8)
            label = rng.integers(0, 3, size_hw, dtype=np.uint8)
            atomic_write_image(osp.join(root, 'img_dir', seq, f'{i:06d}.png'), img)
            atomic_write_image(osp.join(root, 'ann_dir', seq, f'{i:06d}.png'), label)


@pytest.mark.slow
def test_show_dir_and_pred_dir_with_reference_resize(tmp_path):
    root = str(tmp_path / 'data')
    _write_sequences(root)
    config = tmp_path / 'squash.py'
    config.write_text(
        f'_base_ = [{CONFIG!r}]\n'
        'test_dataloader = dict(dataset=dict(\n'
        f'    data_root={root!r}, data_prefix=dict(img_path="img_dir", seg_map_path="ann_dir"),\n'
        '    pipeline=[dict(type="LoadImageFromFile"), dict(type="LoadAnnotations"),\n'
        '              dict(type="ReferenceEvalResize", scale=(64, 64)),\n'
        '              dict(type="PackSegInputs")]))\n')
    init_default_scope('mmseg')
    model = MODELS.build(Config.fromfile(CONFIG).model)
    ckpt = str(tmp_path / 'model.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)

    show_dir, pred_dir = tmp_path / 'show', tmp_path / 'pred'
    run_tool(['tools/test.py', str(config), ckpt, '--work-dir', str(tmp_path / 'work'),
              '--show-dir', str(show_dir), '--pred-dir', str(pred_dir),
              '--cfg-options', 'default_hooks.visualization.interval=1'])

    # One mask per frame, mirroring the tree below data_root, at the scored 64x64.
    masks = sorted(osp.relpath(osp.join(d, f), pred_dir)
                   for d, _, fs in os.walk(pred_dir) for f in fs)
    assert masks == [osp.join('img_dir', s, f'{i:06d}.png')
                     for s in ('seq_a', 'seq_b') for i in range(2)]
    # One picture per frame (label | prediction side by side, each 64x64).
    pictures = [osp.join(d, f) for d, _, fs in os.walk(show_dir) for f in fs
                if f.endswith('.png')]
    assert len(pictures) == 4, pictures
    assert any('seq_a' in p for p in pictures) and any('seq_b' in p for p in pictures)
    assert cv2.imread(pictures[0]).shape == (64, 128, 3)
