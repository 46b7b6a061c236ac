"""FMB converter: 9-class labels, infrared encodings, resume and bad input."""
import importlib.util
import os
import sys

import numpy as np
import pytest
from PIL import Image

from madm.datasets.conversion import ConversionError
from madm.datasets.conversion.fmb import convert_fmb
from madm.utils.paths import MissingDataError

LABEL = np.array([list(range(15)) + [255]], np.uint8)


def _save(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture
def root(tmp_path):
    root = str(tmp_path / 'FMB')
    for split, i in (('train', 1), ('test', 43)):
        _save(f'{root}/{split}/Label/{i:05d}.png', LABEL)
        _save(f'{root}/{split}/Infrared/{i:05d}.png',
              np.tile(np.arange(100, 116, dtype=np.uint8), (16, 1)))
    return root


def test_labels_and_encodings(root):
    summary = convert_fmb(root, encodings=['replicate', 'clahe'], show_progress=False)
    assert summary.written == 2 + 4
    label = np.array(Image.open(f'{root}/test/Label9/00043.png'))
    assert label[0].tolist() == [255, 4, 5, 1, 8, 8, 6, 0, 2, 7, 7, 7, 7, 7, 3, 255]
    rep = np.array(Image.open(f'{root}/train/Infrared_replicate/00001.png'))
    assert rep.shape == (16, 16, 3) and (rep[..., 0] == rep[..., 2]).all()
    clahe = np.array(Image.open(f'{root}/train/Infrared_clahe/00001.png'))
    assert np.ptp(clahe[..., 0]) > np.ptp(rep[..., 0])


def test_resume_and_atomic(root):
    convert_fmb(root, show_progress=False)
    again = convert_fmb(root, show_progress=False)
    assert again.written == 0 and again.skipped == 2
    assert not [n for _, _, names in os.walk(root) for n in names if n.startswith('.tmp-')]


def test_hidden_files_are_not_inputs(root):
    # A killed run's temporary and a macOS '._' file are not FMB images.
    for name in ('.tmp-0123abcd.png', '._00001.png'):
        with open(f'{root}/train/Label/{name}', 'wb') as f:
            f.write(b'not a png')
    summary = convert_fmb(root, show_progress=False)
    assert summary.written == 2
    assert sorted(os.listdir(f'{root}/train/Label9')) == ['00001.png']


def test_out_of_range_and_corrupted(root):
    _save(f'{root}/test/Label/00044.png', np.array([[3, 15, 200]], np.uint8))
    with open(f'{root}/train/Label/00001.png', 'r+b') as f:
        f.truncate(40)
    with pytest.raises(ConversionError) as err:
        convert_fmb(root, show_progress=False)
    msg = str(err.value)
    assert 'test/Label/00044.png' in msg and '[15, 200]' in msg
    assert 'train/Label/00001.png' in msg
    assert os.listdir(f'{root}/test/Label9') == ['00043.png']
    assert not os.path.exists(f'{root}/train/Label9')


def test_missing_split_folder(root):
    with pytest.raises(MissingDataError, match='FMB val/Label'):
        convert_fmb(root, splits=['val'], show_progress=False)
    with pytest.raises(ValueError, match='clahe'):
        convert_fmb(root, encodings=['colormap'], show_progress=False)


def test_cli(root, monkeypatch, capsys):
    path = os.path.join(os.path.dirname(__file__), '..', '..', 'data_converters', 'fmb.py')
    spec = importlib.util.spec_from_file_location('_madm_cli_fmb', path)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    monkeypatch.setattr(sys, 'argv', ['fmb.py', '--help'])
    with pytest.raises(SystemExit) as code:
        cli.main()
    assert code.value.code == 0 and 'Label9' in capsys.readouterr().out
    monkeypatch.setattr(sys, 'argv', ['fmb.py', root, '--splits', 'test', '--no-progress'])
    cli.main()
    assert 'written 1, skipped 0, failed 0' in capsys.readouterr().out
