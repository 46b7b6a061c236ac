"""Shared pytest setup: madm is imported first so its mmcv-lite shim precedes mmseg."""
import os

# No test may reach the network; Hugging Face libraries then fail fast instead of retrying.
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')

import madm  # noqa: E402,F401  registers all modules, installs the mmcv-lite shim

import pytest  # noqa: E402

from _helpers import write_tiny_seg_dataset  # noqa: E402


@pytest.fixture
def tiny_seg_dataset(tmp_path):
    return write_tiny_seg_dataset(str(tmp_path / 'tiny_data'))
