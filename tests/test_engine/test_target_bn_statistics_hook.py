from types import SimpleNamespace
from unittest.mock import MagicMock

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmseg.registry import HOOKS, MODELS
from mmseg.structures import SegDataSample
from torch.utils.data import DataLoader

import madm  # noqa: F401


def _segmentor():
    init_default_scope('mmseg')
    return MODELS.build(dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[0.0] * 3, std=[1.0] * 3),
        backbone=dict(type='ResNetV1c', depth=18, num_stages=2, out_indices=(1, ),
                      strides=(1, 2), dilations=(1, 1), base_channels=8, stem_channels=8,
                      norm_cfg=dict(type='BN')),
        decode_head=dict(type='FCNHead', in_channels=16, channels=8, num_convs=1,
                         num_classes=3, in_index=0, norm_cfg=dict(type='BN'),
                         loss_decode=dict(type='CrossEntropyLoss'))))


def _batches(offset: float, n: int = 3) -> list[dict]:
    g = torch.Generator().manual_seed(1)
    return [dict(inputs=[torch.rand(3, 16, 16, generator=g) * 50 + offset for _ in range(2)],
                 data_samples=[SegDataSample() for _ in range(2)]) for _ in range(n)]


def test_hook_re_estimates_bn_statistics_before_test_only():
    model = _segmentor()
    model.eval()
    bn = model.backbone.stem[1]
    source_mean = bn.running_mean.clone()
    hook = HOOKS.build(dict(type='TargetBNStatisticsHook', dataloader=_batches(100.0),
                            max_batches=2))
    runner = SimpleNamespace(model=model, seed=0, logger=MagicMock())
    hook.before_test(runner)
    assert int(bn.num_batches_tracked) == 2  # max_batches
    assert not torch.allclose(bn.running_mean, source_mean)
    assert not model.training
    assert 're-estimated on 2 target batches' in runner.logger.info.call_args[0][0]
    # and the prediction now depends on the target statistics
    after = bn.running_mean.clone()
    hook2 = HOOKS.build(dict(type='TargetBNStatisticsHook', dataloader=_batches(-100.0)))
    hook2.before_test(runner)
    assert int(bn.num_batches_tracked) == 3
    assert not torch.allclose(bn.running_mean, after)
    # training and validation keep theirs: only before_test is overridden
    for stage in ('before_train', 'before_val', 'after_train_iter', 'after_val'):
        assert getattr(type(hook), stage) is getattr(Hook, stage), stage


def test_hook_builds_a_dataloader_from_a_config(monkeypatch):
    built = DataLoader(_batches(5.0, n=1), batch_size=None)
    calls = []

    def fake_build(cfg, seed=None):
        calls.append((cfg, seed))
        return built

    monkeypatch.setattr(Runner, 'build_dataloader', staticmethod(fake_build))
    model = _segmentor()
    hook = HOOKS.build(dict(type='TargetBNStatisticsHook', dataloader=dict(dataset='x')))
    hook.before_test(SimpleNamespace(model=model, seed=7, logger=MagicMock()))
    assert calls == [(dict(dataset='x'), 7)]
    assert int(model.backbone.stem[1].num_batches_tracked) == 1


def test_hook_rejects_a_non_positive_batch_limit():
    with pytest.raises(ValueError, match='max_batches'):
        HOOKS.build(dict(type='TargetBNStatisticsHook', dataloader=[], max_batches=0))
