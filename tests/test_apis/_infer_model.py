"""A tiny segmentor checkpoint whose prediction is known: class 1 everywhere."""
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

from _helpers import REPO_ROOT

TINY_CONFIG = osp.join(REPO_ROOT, 'tests', 'data', 'configs', 'tiny_encoder_decoder.py')
# MADM's test-pipeline shape (method.md §8.4) at a tiny scale: inference must drop the label
# steps and keep the 64x64 model input.
CONFIG_TEXT = f'''_base_ = [{TINY_CONFIG!r}]
test_pipeline = [
    dict(type='LoadModalityImage'),
    dict(type='LoadLabelMap'),
    dict(type='MapLabels', mapping='identity_11'),
    dict(type='ReferenceEvalResize', scale=(64, 64)),
    dict(type='PackSegInputs'),
]
'''
CONFIG_PALETTE = [[255, 0, 0], [0, 255, 0], [0, 0, 255]]


def save_constant_checkpoint(path: str, config_path: str, meta: dict | None = None) -> None:
    """Save a bare state dict of the tiny model whose head always predicts class 1."""
    cfg = Config.fromfile(config_path)
    init_default_scope('mmseg')
    model = MODELS.build(cfg.model)
    with torch.no_grad():
        model.decode_head.conv_seg.weight.zero_()
        model.decode_head.conv_seg.bias.copy_(torch.tensor([0.0, 5.0, 0.0]))
    state = {'state_dict': model.state_dict()}
    if meta is not None:
        state['meta'] = meta
    torch.save(state, path)
