"""Cityscapes converter: labelTrainIds, DAFormer RCS statistics, resume and bad input."""
import json
import os
import sys

import numpy as np
import pytest
from PIL import Image

from madm.datasets.conversion import ConversionError
from madm.datasets.conversion.cityscapes import (convert_cityscapes, load_class_stats,
                                                 samples_with_class)
from madm.utils.paths import MissingDataError

LABEL_IDS = np.array([[7, 8, 22, 0, 33, 255], [7, 7, 7, 7, 26, 26]], np.uint8)
# road sidewalk terrain void bicycle plate / road x4 car x2
TRAIN_IDS = [[0, 1, 9, 255, 18, 255], [0, 0, 0, 0, 13, 13]]


def load_cli(name):
    """Import data_converters/<name>.py under a unique module name."""
    import importlib.util
    path = os.path.join(os.path.dirname(__file__), '..', '..', 'data_converters', f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'_madm_cli_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _save(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture
def root(tmp_path):
    root = str(tmp_path / 'cityscapes')
    for split, city, idx in (('train', 'aachen', 0), ('train', 'bremen', 3), ('val', 'lindau', 0)):
        stem = f'{city}_{idx:06d}_000019'
        _save(f'{root}/gtFine/{split}/{city}/{stem}_gtFine_labelIds.png', LABEL_IDS)
    return root


def _tmp_files(root):
    return [n for _, _, names in os.walk(root) for n in names if n.startswith('.tmp-')]


def test_convert_writes_train_ids_and_stats(root):
    summary = convert_cityscapes(root, show_progress=False)
    assert summary.written == 3 + 2 and summary.skipped == 0 and not summary.failed
    out = np.array(Image.open(
        f'{root}/gtFine/val/lindau/lindau_000000_000019_gtFine_labelTrainIds.png'))
    assert out.tolist() == TRAIN_IDS
    stats, with_class = load_class_stats(root)
    aachen = 'gtFine/train/aachen/aachen_000000_000019_gtFine_labelTrainIds.png'
    bremen = 'gtFine/train/bremen/bremen_000003_000019_gtFine_labelTrainIds.png'
    # Only train labels, trainIds with n > 0 as string keys, 255 not counted.
    assert stats == [{'0': 5, '1': 1, '9': 1, '13': 2, '18': 1, 'file': aachen},
                     {'0': 5, '1': 1, '9': 1, '13': 2, '18': 1, 'file': bremen}]
    assert with_class['13'] == [[aachen, 2], [bremen, 2]]
    assert set(with_class) == {'0', '1', '9', '13', '18'}
    with open(f'{root}/samples_with_class.json') as f:
        assert json.load(f) == samples_with_class(stats)


def test_second_run_skips_everything(root):
    convert_cityscapes(root, show_progress=False)
    again = convert_cityscapes(root, show_progress=False)
    assert again.written == 0 and again.skipped == 5
    assert not _tmp_files(root)


def test_existing_train_ids_are_kept(root):
    keep = np.full((2, 6), 5, np.uint8)
    path = f'{root}/gtFine/train/aachen/aachen_000000_000019_gtFine_labelTrainIds.png'
    _save(path, keep)
    convert_cityscapes(root, show_progress=False)
    assert (np.array(Image.open(path)) == 5).all()
    assert load_class_stats(root)[0][0]['5'] == 12


def test_corrupted_and_out_of_range_inputs_name_the_file(root):
    bad = f'{root}/gtFine/train/bremen/bremen_000003_000019_gtFine_labelIds.png'
    data = open(bad, 'rb').read()
    with open(bad, 'wb') as f:
        f.write(data[:40])
    _save(f'{root}/gtFine/val/lindau/lindau_000001_000019_gtFine_labelIds.png',
          np.array([[7, 40]], np.uint8))
    with pytest.raises(ConversionError) as err:
        convert_cityscapes(root, show_progress=False)
    msg = str(err.value)
    assert 'bremen_000003_000019_gtFine_labelIds.png' in msg and 'corrupted' in msg
    assert 'lindau_000001_000019_gtFine_labelIds.png' in msg and '[40]' in msg
    assert not os.path.exists(bad.replace('labelIds', 'labelTrainIds'))
    assert os.path.exists(
        f'{root}/gtFine/train/aachen/aachen_000000_000019_gtFine_labelTrainIds.png')
    assert not os.path.exists(f'{root}/sample_class_stats.json')
    assert not _tmp_files(root)


def test_missing_folder_and_missing_stats(tmp_path):
    with pytest.raises(MissingDataError, match='gtFine'):
        convert_cityscapes(str(tmp_path), show_progress=False)
    with pytest.raises(MissingDataError, match='data_converters/cityscapes.py'):
        load_class_stats(str(tmp_path))


def test_cli_help_and_run(root, monkeypatch, capsys):
    cli = load_cli('cityscapes')
    monkeypatch.setattr(sys, 'argv', ['cityscapes.py', '--help'])
    with pytest.raises(SystemExit) as code:
        cli.main()
    assert code.value.code == 0 and 'samples_with_class.json' in capsys.readouterr().out
    monkeypatch.setattr(sys, 'argv', ['cityscapes.py', root, '--no-progress'])
    cli.main()
    assert 'written 5, skipped 0, failed 0' in capsys.readouterr().out
