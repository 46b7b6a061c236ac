"""Fixtures of the madm.apis tests."""
import pytest

from _infer_model import CONFIG_TEXT, save_constant_checkpoint


@pytest.fixture(scope='module')
def tiny_model_files(tmp_path_factory):
    """(config path, checkpoint path) of the constant tiny model."""
    root = tmp_path_factory.mktemp('tiny_model')
    config_path = str(root / 'tiny_infer.py')
    with open(config_path, 'w') as f:
        f.write(CONFIG_TEXT)
    ckpt = str(root / 'constant.pth')
    save_constant_checkpoint(ckpt, config_path)
    return config_path, ckpt
