"""MergedParamGroupsOptimWrapperConstructor (madm/engine/optimizers)."""
import copy

import pytest
import torch
import torch.nn as nn
from mmengine.optim import build_optim_wrapper
from mmengine.optim.scheduler import LinearLR, LinearParamScheduler, MultiStepLR
from mmengine.registry import init_default_scope

import madm  # noqa: F401  registers the constructor
from _helpers import ParamwiseNet, paramwise_wrapper_cfg, settings_by_param
from madm.engine.optimizers import merge_param_groups, unmerged_layout


@pytest.fixture(autouse=True)
def mmseg_scope():
    init_default_scope('mmseg')  # the constructor is in mmseg's registry, as configs use it


def test_merge_keeps_order_and_settings():
    a, b, c, d = (nn.Parameter(torch.zeros(1)) for _ in range(4))
    groups = [dict(params=[a], weight_decay=0.0), dict(params=[b]),
              dict(params=[c], weight_decay=0.0), dict(params=[d], betas=[0.9, 0.99])]
    merged = merge_param_groups(groups)
    assert [g['params'] for g in merged] == [[a, c], [b], [d]]
    assert merged[0]['weight_decay'] == 0.0 and 'weight_decay' not in merged[1]
    assert merged[2]['betas'] == [0.9, 0.99]  # unhashable settings are compared by value


def test_groups_merge_by_setting_and_each_parameter_keeps_its_own():
    model = ParamwiseNet()
    default = build_optim_wrapper(model, paramwise_wrapper_cfg(merged=False))
    merged = build_optim_wrapper(model, paramwise_wrapper_cfg(merged=True))
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
    model = ParamwiseNet()
    twin, initial = copy.deepcopy(model), copy.deepcopy(model)
    wrappers = [build_optim_wrapper(model, paramwise_wrapper_cfg(merged=False, **form)),
                build_optim_wrapper(twin, paramwise_wrapper_cfg(merged=True, **form))]
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


def unclipped_wrapper(model: nn.Module, merged: bool):
    """Without the clip, the merge changes no bit of an update."""
    wrapper = build_optim_wrapper(model, paramwise_wrapper_cfg(merged=merged))
    wrapper.clip_grad_kwargs = {}
    return wrapper


def schedules(wrapper) -> list:
    """A warm-up and a step decay inside five steps, as the configs' LinearLR + MultiStepLR."""
    return [LinearLR(wrapper, start_factor=0.1, end=2, by_epoch=False),
            MultiStepLR(wrapper, milestones=[3], gamma=0.1, by_epoch=False)]


def train(model: nn.Module, wrapper, steps: range, lr_schedules: list = ()) -> None:
    for step in steps:
        x = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(step))
        wrapper.update_params(model(x).pow(2).sum())
        for schedule in lr_schedules:
            schedule.step()


def assert_same_state(a: dict, b: dict) -> None:
    assert a['param_groups'] == b['param_groups']
    assert a['state'].keys() == b['state'].keys()
    for index, state in a['state'].items():
        assert state.keys() == b['state'][index].keys()
        for key, value in state.items():
            assert torch.equal(value, b['state'][index][key]), (index, key)


def test_state_dict_has_the_default_constructors_layout():
    """What a checkpoint stores does not depend on the merge (no clipping: bit for bit)."""
    torch.manual_seed(0)
    model = ParamwiseNet()
    twin = copy.deepcopy(model)
    default, merged = unclipped_wrapper(model, False), unclipped_wrapper(twin, True)
    train(model, default, range(2))
    train(twin, merged, range(2))
    assert len(merged.optimizer.param_groups) == 3
    state = merged.state_dict()
    assert len(state['param_groups']) == 6
    assert_same_state(state, default.state_dict())


@pytest.mark.parametrize('saved_merged, resumed_merged',
                         [(True, True), (False, True), (True, False)])
def test_resume_across_the_switch_continues_exactly(saved_merged, resumed_merged):
    """Three steps, a checkpoint, two more: as five uninterrupted steps, whichever
    constructor wrote the checkpoint and whichever resumes it, with the configs' kind of
    learning-rate schedule saved and restored as the Runner does."""
    torch.manual_seed(0)
    model = ParamwiseNet()
    uninterrupted = copy.deepcopy(model)
    reference = unclipped_wrapper(uninterrupted, resumed_merged)
    writer = unclipped_wrapper(model, saved_merged)
    reference_schedules, writer_schedules = schedules(reference), schedules(writer)
    train(uninterrupted, reference, range(5), reference_schedules)
    train(model, writer, range(3), writer_schedules)
    checkpoint = copy.deepcopy({'model': model.state_dict(), 'optim': writer.state_dict(),
                                'schedules': [s.state_dict() for s in writer_schedules]})

    resumed = ParamwiseNet()
    resumed.load_state_dict(checkpoint['model'])
    wrapper = unclipped_wrapper(resumed, resumed_merged)
    resumed_schedules = schedules(wrapper)  # built before loading, as in Runner.resume
    wrapper.load_state_dict(checkpoint['optim'])
    for schedule, state in zip(resumed_schedules, checkpoint['schedules']):
        schedule.load_state_dict(state)
    train(resumed, wrapper, range(3, 5), resumed_schedules)
    assert wrapper.get_lr() == reference.get_lr()
    for (name, p), q in zip(resumed.named_parameters(), uninterrupted.parameters()):
        assert torch.equal(p, q), name


def test_a_checkpoint_in_the_merged_layout_still_loads():
    """Checkpoints written before the optimizer saved the unmerged layout."""
    torch.manual_seed(0)
    model = ParamwiseNet()
    wrapper = build_optim_wrapper(model, paramwise_wrapper_cfg(merged=True))
    train(model, wrapper, range(1))
    hooks = wrapper.optimizer._optimizer_state_dict_post_hooks
    saved_hooks = dict(hooks)
    hooks.clear()  # as the optimizer saved before
    old = copy.deepcopy(wrapper.state_dict())
    hooks.update(saved_hooks)
    assert len(old['param_groups']) == 3
    twin = copy.deepcopy(model)
    resumed = build_optim_wrapper(twin, paramwise_wrapper_cfg(merged=True))
    resumed.load_state_dict(old)
    train(model, wrapper, range(1, 2))
    train(twin, resumed, range(1, 2))
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.equal(p, q)


def test_a_state_that_does_not_fit_is_refused_clearly():
    model = ParamwiseNet()
    wrapper = build_optim_wrapper(model, paramwise_wrapper_cfg(merged=True))
    smaller = nn.Sequential(nn.Linear(3, 3))
    other = build_optim_wrapper(smaller, paramwise_wrapper_cfg(merged=False)).state_dict()
    with pytest.raises(ValueError, match='another model or another optim_wrapper.paramwise_cfg'):
        wrapper.load_state_dict(other)
    # the right layout, but settings that the merge would have to mix
    default = build_optim_wrapper(ParamwiseNet(), paramwise_wrapper_cfg(merged=False))
    state = copy.deepcopy(default.state_dict())
    state['param_groups'][1]['weight_decay'] = 0.5  # conv.bias, merged with the norm's
    with pytest.raises(ValueError, match='different settings to parameters that share'):
        wrapper.load_state_dict(state)


def test_one_merged_group_keeps_the_wrappers_base_settings_group():
    """mmengine's wrapper adds a group for the base settings where the optimizer has more than
    one; the merged one has it too, so its schedulers keep as many values as the default's."""
    cfg = paramwise_wrapper_cfg(merged=True)
    cfg['paramwise_cfg'] = dict(custom_keys={'no such parameter': dict(lr_mult=2.0)})
    model = ParamwiseNet()
    merged = build_optim_wrapper(model, cfg)
    default = build_optim_wrapper(model, dict(cfg, constructor='DefaultOptimWrapperConstructor'))
    assert len(merged.optimizer.param_groups) == 1 and len(default.optimizer.param_groups) == 6
    assert len(merged.param_groups) == 2 and merged.get_lr() == {'base_lr': [1e-3], 'lr': [1e-3]}
    settings = [{k: v for k, v in w.base_param_settings.items() if k != 'params'}
                for w in (merged, default)]
    assert settings[0] == settings[1]
    assert unmerged_layout(merged.optimizer) == [[(0, i)] for i in range(6)]
    assert unmerged_layout(default.optimizer) is None
    assert unmerged_layout(copy.deepcopy(merged.optimizer)) is None  # torch drops the hooks too
