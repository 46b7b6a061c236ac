"""DELIVER converter: 11-class labels, depth encodings, resume and bad input."""
import importlib.util
import os
import sys

import numpy as np
import pytest
from PIL import Image

from madm.datasets.conversion import ConversionError
from madm.datasets.conversion.deliver import convert_deliver
from madm.utils.paths import MissingDataError

SCENE = 'cloud/test/MAP_10_point102'


def _save(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture
def root(tmp_path):
    root = str(tmp_path / 'DELIVER')
    sem = np.zeros((2, 4, 3), np.uint8)
    sem[..., 0] = [[0, 6, 7, 13], [22, 25, 3, 255]]  # raw R = class id + 1
    sem[..., 1] = 9  # G must be ignored
    depth = np.array([[0, 60, 120, 255], [30, 90, 150, 200]], np.uint8)
    for frame in ('045050', '045100'):
        _save(f'{root}/semantic/{SCENE}/{frame}_semantic_front.png', sem)
        _save(f'{root}/depth/{SCENE}/{frame}_depth_front.png', np.repeat(depth[..., None], 3, 2))
    return root


def _tmp_files(root):
    return [n for _, _, names in os.walk(root) for n in names if n.startswith('.tmp-')]


def test_labels_and_encodings(root):
    summary = convert_deliver(root, conditions=['cloud'], encodings=['replicate', 'colormap'],
                              show_progress=False)
    assert summary.written == 2 + 4 and summary.skipped == 0
    label = np.array(Image.open(f'{root}/semantic_11/{SCENE}/045050_semantic_front.png'))
    # unlabeled->255, RoadLine/Road->road 5, Sky->0, Terrain->vegetation 7, Truck->car 8, Other->255
    assert label.tolist() == [[255, 5, 5, 0], [7, 8, 255, 255]]
    rep = np.array(Image.open(f'{root}/depth_replicate/{SCENE}/045050_depth_front.png'))
    assert rep.shape == (2, 4, 3) and rep[0, :, 0].tolist() == [0, 60, 120, 255]
    cmap = np.array(Image.open(f'{root}/depth_colormap/{SCENE}/045050_depth_front.png'))
    assert cmap.shape == (2, 4, 3) and not (cmap[..., 0] == cmap[..., 1]).all()


def test_second_run_skips_and_leaves_no_temp_files(root):
    convert_deliver(root, conditions=['cloud'], encodings=['inverse_depth'], show_progress=False)
    again = convert_deliver(root, conditions=['cloud'], encodings=['inverse_depth'],
                            show_progress=False)
    assert again.written == 0 and again.skipped == 4
    assert not _tmp_files(root)


def test_converted_labels_load_through_the_dataset(root):
    from mmengine.registry import init_default_scope

    from madm.datasets import DELIVERDepthDataset
    init_default_scope('mmseg')
    convert_deliver(root, conditions=['cloud'], encodings=['colormap'], show_progress=False)
    ds = DELIVERDepthDataset(
        data_root=root, conditions=['cloud'], modality_dir='depth_colormap',
        label_dir='semantic_11', label_mapping='identity_11',
        pipeline=[dict(type='LoadModalityImage'), dict(type='LoadLabelMap'), dict(type='MapLabels'),
                  dict(type='PackSegInputs')])
    assert ds[0]['data_samples'].gt_sem_seg.data[0].tolist() == [[255, 5, 5, 0], [7, 8, 255, 255]]


def test_bad_inputs_name_the_file(root):
    bad_range = np.zeros((2, 4, 3), np.uint8)
    bad_range[0, 0, 0] = 26
    _save(f'{root}/semantic/{SCENE}/045100_semantic_front.png', bad_range)
    with open(f'{root}/semantic/{SCENE}/045050_semantic_front.png', 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n garbage')
    with pytest.raises(ConversionError) as err:
        convert_deliver(root, conditions=['cloud'], show_progress=False)
    msg = str(err.value)
    assert '045050_semantic_front.png' in msg and '045100_semantic_front.png' in msg
    assert '[26]' in msg
    assert not os.path.exists(f'{root}/semantic_11/{SCENE}')
    assert not _tmp_files(root)


def test_missing_folder(tmp_path):
    with pytest.raises(MissingDataError, match='DELIVER'):
        convert_deliver(str(tmp_path / 'none'), show_progress=False)
    os.makedirs(tmp_path / 'D' / 'semantic')
    with pytest.raises(MissingDataError, match='semantic_front'):
        convert_deliver(str(tmp_path / 'D'), show_progress=False)


def test_cli(root, monkeypatch, capsys):
    path = os.path.join(os.path.dirname(__file__), '..', '..', 'data_converters', 'deliver.py')
    spec = importlib.util.spec_from_file_location('_madm_cli_deliver', path)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    monkeypatch.setattr(sys, 'argv', ['deliver.py', '--help'])
    with pytest.raises(SystemExit) as code:
        cli.main()
    assert code.value.code == 0 and '--encodings' in capsys.readouterr().out
    monkeypatch.setattr(sys, 'argv', ['deliver.py', root, '--conditions', 'cloud', '--no-progress'])
    cli.main()
    assert 'written 2, skipped 0, failed 0' in capsys.readouterr().out
