"""MergedParamGroupsOptimWrapperConstructor (madm/engine/optimizers)."""
import copy

import pytest
import torch
import torch.nn as nn
from mmengine.optim import build_optim_wrapper
from mmengine.optim.scheduler import LinearParamScheduler
from mmengine.registry import init_default_scope

import madm  # noqa: F401  registers the constructor
from madm.engine.optimizers import merge_param_groups


@pytest.fixture(autouse=True)
def mmseg_scope():
    init_default_scope('mmseg')  # the constructor is in mmseg's registry, as configs use it


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.norm = nn.GroupNorm(2, 8)
        self.head = nn.Linear(8, 4)
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.frozen(self.head(self.norm(self.conv(x)).mean((2, 3))))


def wrapper_cfg(merged: bool, **optimizer) -> dict:
    cfg = dict(type='OptimWrapper',
               optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05, **optimizer),
               paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0,
                                  custom_keys={'head.weight': dict(lr_mult=10.0)}),
               clip_grad=dict(max_norm=0.01, norm_type=2))
    if merged:
        cfg['constructor'] = 'MergedParamGroupsOptimWrapperConstructor'
    return cfg


def settings_by_param(model: nn.Module, wrapper) -> dict:
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: (g['lr'], g['weight_decay'])
            for g in wrapper.optimizer.param_groups for p in g['params']}


def test_merge_keeps_order_and_settings():
    a, b, c, d = (nn.Parameter(torch.zeros(1)) for _ in range(4))
    groups = [dict(params=[a], weight_decay=0.0), dict(params=[b]),
              dict(params=[c], weight_decay=0.0), dict(params=[d], betas=[0.9, 0.99])]
    merged = merge_param_groups(groups)
    assert [g['params'] for g in merged] == [[a, c], [b], [d]]
    assert merged[0]['weight_decay'] == 0.0 and 'weight_decay' not in merged[1]
    assert merged[2]['betas'] == [0.9, 0.99]  # unhashable settings are compared by value


def test_groups_merge_by_setting_and_each_parameter_keeps_its_own():
    model = Net()
    default = build_optim_wrapper(model, wrapper_cfg(merged=False))
    merged = build_optim_wrapper(model, wrapper_cfg(merged=True))
    assert len(default.optimizer.param_groups) == 6  # one per trainable parameter
    # decay (conv.weight), no decay (biases, norm), the head weight's 10x learning rate
    assert len(merged.optimizer.param_groups) == 3
    assert settings_by_param(model, merged) == settings_by_param(model, default)
    assert 'frozen.weight' not in settings_by_param(model, merged)


@pytest.mark.parametrize('form', [dict(foreach=True), dict(fused=True), dict(foreach=False)])
@pytest.mark.parametrize('clip', [False, True])
def test_training_matches_one_group_per_parameter(form, clip):
    """Bit for bit without clipping. With it, the global gradient norm sums the parameters in
    the merged groups' order, which may round its last bit differently."""
    torch.manual_seed(0)
    model = Net()
    twin, initial = copy.deepcopy(model), copy.deepcopy(model)
    wrappers = [build_optim_wrapper(model, wrapper_cfg(merged=False, **form)),
                build_optim_wrapper(twin, wrapper_cfg(merged=True, **form))]
    if not clip:
        for wrapper in wrappers:
            wrapper.clip_grad_kwargs = {}
    schedulers = [LinearParamScheduler(w, 'lr', start_factor=0.1, end=3, by_epoch=False)
                  for w in wrappers]
    for step in range(5):
        x = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(step))
        for net, wrapper, scheduler in zip((model, twin), wrappers, schedulers):
            wrapper.update_params(net(x).pow(2).sum())
            scheduler.step()
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        if clip:
            torch.testing.assert_close(p, q, rtol=1e-6, atol=0, msg=name)
        else:
            assert torch.equal(p, q), name
    # training moved the trainable weights (and only those)
    for (name, p), q in zip(model.named_parameters(), initial.parameters()):
        assert torch.equal(p, q) == name.startswith('frozen'), name


def test_merged_optimizer_state_round_trips():
    torch.manual_seed(0)
    model = Net()
    wrapper = build_optim_wrapper(model, wrapper_cfg(merged=True))
    x = torch.randn(2, 3, 6, 6)
    wrapper.update_params(model(x).sum())
    state = copy.deepcopy(wrapper.state_dict())
    twin = copy.deepcopy(model)
    resumed = build_optim_wrapper(twin, wrapper_cfg(merged=True))
    resumed.load_state_dict(state)
    wrapper.update_params(model(x).sum())
    resumed.update_params(twin(x).sum())
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.equal(p, q)
    # a per-parameter checkpoint does not load: the groups differ
    with pytest.raises(ValueError, match='parameter group'):
        build_optim_wrapper(copy.deepcopy(model), wrapper_cfg(merged=False)).load_state_dict(
            state)
