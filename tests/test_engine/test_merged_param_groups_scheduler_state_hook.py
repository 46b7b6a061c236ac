"""MergedParamGroupsSchedulerStateHook: the schedulers' per-group state across the merge."""
import copy
import os.path as osp
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config
from mmengine.model import BaseModel
from mmengine.optim import OptimWrapperDict, build_optim_wrapper
from mmengine.optim.scheduler import (CosineAnnealingLR, CosineAnnealingMomentum,
                                      CosineRestartLR, OneCycleLR, ReduceOnPlateauLR)
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmseg.engine.schedulers import PolyLRRatio
from torch.utils.data import DataLoader

import madm  # noqa: F401  registers the hook and the constructor
from _helpers import REPO_ROOT, ParamwiseNet, paramwise_wrapper_cfg, settings_by_param
from madm.engine.hooks import MergedParamGroupsSchedulerStateHook
from madm.engine.hooks.merged_param_groups_scheduler_state_hook import PER_GROUP_KEYS

RUNTIME_HOOKS = Config.fromfile(
    osp.join(REPO_ROOT, 'configs', '_base_', 'default_runtime.py')).custom_hooks
# a warm-up, then a cosine whose minimum depends on each group's base value (eta_min_ratio)
SCHEDULE = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2),
            dict(type='CosineAnnealingLR', T_max=6, eta_min_ratio=0.1, by_epoch=False,
                 begin=2, end=8)]
ITERS, SAVED = 8, 4
SWITCHES = [(False, True), (True, False), (True, True)]  # (written merged, resumed merged)


@pytest.fixture(autouse=True)
def mmseg_scope():
    init_default_scope('mmseg')


class _Model(BaseModel):
    def __init__(self) -> None:
        super().__init__()
        self.net = ParamwiseNet()

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.net(torch.stack(inputs))
        return dict(loss=out.pow(2).sum()) if mode == 'loss' else out


def _loader() -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    data = [torch.randn(3, 6, 6, generator=generator) for _ in range(2 * ITERS)]
    return DataLoader(data, batch_size=2, shuffle=False,
                      collate_fn=lambda batch: dict(inputs=list(batch)))


def _train(work_dir: Path, merged: bool, max_iters: int, load_from: str | None = None,
           resume: bool = False, custom_hooks: list = RUNTIME_HOOKS) -> Runner:
    """The runtime's hooks, no gradient clip (so the merge changes no bit of an update)."""
    torch.manual_seed(int(resume))  # other initial weights: a run that did not resume differs
    optim_wrapper = paramwise_wrapper_cfg(merged)
    del optim_wrapper['clip_grad']
    runner = Runner(
        model=_Model(), work_dir=str(work_dir),
        experiment_name=f'{work_dir.parent.name}_{work_dir.name}',  # mmengine's names: unique
        train_dataloader=_loader(), optim_wrapper=optim_wrapper,
        param_scheduler=copy.deepcopy(SCHEDULE),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=SAVED,
                                           by_epoch=False),
                           logger=dict(type='LoggerHook', interval=100)),
        custom_hooks=copy.deepcopy(custom_hooks), load_from=load_from, resume=resume,
        default_scope='mmseg', randomness=dict(seed=0))
    runner.train()
    return runner


def _outcome(runner: Runner) -> tuple[dict, list, dict]:
    """Every parameter's learning rate (and weight decay), the base lr, the weights."""
    model = runner.model
    return (settings_by_param(model, runner.optim_wrapper),
            runner.optim_wrapper.get_lr()['base_lr'],
            {k: v.clone() for k, v in model.state_dict().items()})


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp('uninterrupted')
    return {merged: _outcome(_train(root / f'merged{merged}', merged, ITERS))
            for merged in (False, True)}


def _resume(tmp_path, written_merged: bool, resumed_merged: bool, **kwargs) -> Runner:
    _train(tmp_path / 'written', written_merged, SAVED, **kwargs)
    checkpoint = str(tmp_path / 'written' / f'iter_{SAVED}.pth')
    return _train(tmp_path / 'resumed', resumed_merged, ITERS, load_from=checkpoint,
                  resume=True, **kwargs)


@pytest.mark.parametrize('written_merged, resumed_merged', SWITCHES)
def test_resume_across_the_switch_continues_the_cosine_schedule_exactly(
        tmp_path, uninterrupted, written_merged, resumed_merged):
    """Four steps, a checkpoint, four more with the other constructor (or the same): every
    parameter's learning rate and weight as in eight uninterrupted steps, bit for bit."""
    runner = _resume(tmp_path, written_merged, resumed_merged)
    lrs, base_lr, weights = _outcome(runner)
    reference = uninterrupted[resumed_merged]
    assert lrs == reference[0] and base_lr == reference[1]
    assert weights.keys() == reference[2].keys()
    for key, value in reference[2].items():
        assert torch.equal(weights[key], value), key
    # and the same learning rates whichever constructor ran: the merge changes no value
    assert uninterrupted[True][:2] == uninterrupted[False][:2]
    # the checkpoint holds the one-group-per-parameter layout (six groups and the base one)
    saved = torch.load(tmp_path / 'written' / f'iter_{SAVED}.pth', weights_only=True)
    assert [len(s['base_values']) for s in saved['param_schedulers']] == [7, 7]


@pytest.mark.parametrize('written_merged, resumed_merged', SWITCHES[:2])
def test_without_the_hook_some_groups_get_other_learning_rates(
        tmp_path, uninterrupted, written_merged, resumed_merged):
    """What the hook is for: mmengine pairs the cosine's base values with the groups by
    position, silently."""
    hooks = [h for h in RUNTIME_HOOKS if h['type'] != 'MergedParamGroupsSchedulerStateHook']
    assert len(hooks) == len(RUNTIME_HOOKS) - 1
    runner = _resume(tmp_path, written_merged, resumed_merged, custom_hooks=hooks)
    assert _outcome(runner)[0] != uninterrupted[resumed_merged][0]


def _tampered_checkpoint(tmp_path) -> str:
    """A default-constructor checkpoint whose cosine base values differ between two
    parameters that the merged constructor puts in one group (conv.bias, the norm's)."""
    _train(tmp_path / 'written', False, SAVED)
    path = tmp_path / 'written' / f'iter_{SAVED}.pth'
    checkpoint = torch.load(path, weights_only=True)
    checkpoint['param_schedulers'][1]['base_values'][2] *= 2
    torch.save(checkpoint, path)
    return str(path)


def test_values_that_differ_within_a_merged_group_are_refused_on_resume(tmp_path):
    path = _tampered_checkpoint(tmp_path)
    with pytest.raises(ValueError, match=r'(?s)CosineAnnealingLR.base_values holds 7 values '
                       r'for the 4 groups.*different values.*merged group 1.*'
                       r'resume with the constructor and paramwise_cfg it was written with'):
        _train(tmp_path / 'resumed', True, ITERS, load_from=path, resume=True)
    # load_from takes the weights only: the schedulers start afresh, nothing to refuse
    runner = _train(tmp_path / 'loaded', True, SAVED + 1, load_from=path)
    assert runner.iter == SAVED + 1


# each with its lists of one value per group, and lists that are not per group as long as
# the merged wrapper's 3 + 1 groups (CosineRestartLR's periods)
SCHEDULERS = {
    'CosineAnnealingLR': lambda w: CosineAnnealingLR(w, T_max=5, eta_min_ratio=0.1),
    'CosineRestartLR': lambda w: CosineRestartLR(
        w, periods=[1, 1, 2, 2], restart_weights=[1, 0.5, 0.5, 0.25], eta_min_ratio=0.1),
    'OneCycleLR': lambda w: OneCycleLR(w, eta_max=[10 * g['lr'] for g in w.param_groups],
                                       total_steps=6),
    # one min_value: a list of them has a value per group of the optimizer (not the wrapper),
    # and mmengine repeats the last for the wrapper's base group, so the two differ there
    'ReduceOnPlateauLR': lambda w: ReduceOnPlateauLR(w, monitor='loss', min_value=1e-6),
    'CosineAnnealingMomentum': lambda w: CosineAnnealingMomentum(w, T_max=5, eta_min=0.8),
    'PolyLRRatio': lambda w: PolyLRRatio(optimizer=w, eta_min_ratio=0.1, end=6),
}


def _scheduled(merged: bool, make, steps: int = 2):
    wrapper = build_optim_wrapper(ParamwiseNet(), paramwise_wrapper_cfg(merged))
    scheduler = make(wrapper)
    if not isinstance(scheduler, ReduceOnPlateauLR):  # it steps on a metric
        for _ in range(steps):
            wrapper.step()  # no gradients: moves nothing, but counts as the optimizer's step
            scheduler.step()
    return wrapper, scheduler


def _per_group(state: dict) -> dict:
    return {k: v for k, v in state.items() if k in PER_GROUP_KEYS}


@pytest.mark.parametrize('name', SCHEDULERS)
def test_every_schedulers_per_group_state_saves_and_loads_in_the_unmerged_layout(name):
    default, default_scheduler = _scheduled(False, SCHEDULERS[name])
    merged, merged_scheduler = _scheduled(True, SCHEDULERS[name])
    runner = SimpleNamespace(optim_wrapper=merged, param_schedulers=[merged_scheduler])
    hook = MergedParamGroupsSchedulerStateHook()
    hook.before_train(runner)  # the live state is all known
    expected = default_scheduler.state_dict()
    assert any(len(v) == 7 for v in _per_group(expected).values() if isinstance(v, list))

    saved = {'param_schedulers': [dict(merged_scheduler.state_dict())]}
    hook.before_save_checkpoint(runner, saved)
    assert _per_group(saved['param_schedulers'][0]) == _per_group(expected)

    loaded = {'param_schedulers': [dict(expected)]}
    hook.after_load_checkpoint(runner, loaded)
    assert _per_group(loaded['param_schedulers'][0]) == _per_group(
        merged_scheduler.state_dict())
    merged_scheduler.load_state_dict(loaded['param_schedulers'][0])
    hook.before_train(runner)


def test_each_wrapper_of_an_optim_wrapper_dict_has_its_own_layout():
    _, default_scheduler = _scheduled(False, SCHEDULERS['CosineAnnealingLR'])
    merged, merged_scheduler = _scheduled(True, SCHEDULERS['CosineAnnealingLR'])
    plain, plain_scheduler = _scheduled(False, SCHEDULERS['CosineAnnealingLR'])
    runner = SimpleNamespace(optim_wrapper=OptimWrapperDict(merged=merged, plain=plain),
                             param_schedulers=dict(merged=[merged_scheduler],
                                                   plain=[plain_scheduler]))
    checkpoint = {'param_schedulers': {name: [dict(s.state_dict())]
                                       for name, s in (('merged', merged_scheduler),
                                                       ('plain', plain_scheduler))}}
    hook = MergedParamGroupsSchedulerStateHook()
    hook.before_train(runner)
    hook.before_save_checkpoint(runner, checkpoint)
    saved = checkpoint['param_schedulers']
    assert saved['merged'][0]['base_values'] == default_scheduler.state_dict()['base_values']
    assert saved['plain'][0] == plain_scheduler.state_dict()  # not merged: as it was
    hook.after_load_checkpoint(runner, checkpoint)
    assert saved['merged'][0]['base_values'] == merged_scheduler.state_dict()['base_values']


class _WithAList(CosineAnnealingLR):
    """A scheduler with a state list of the hook does not know, one value per group."""

    def __init__(self, optimizer, **kwargs) -> None:
        self.scales = [1.0 + i for i in range(len(optimizer.param_groups))]
        super().__init__(optimizer, **kwargs)


def test_an_unknown_list_as_long_as_the_groups_is_refused_unless_declared():
    merged, scheduler = _scheduled(True, lambda w: _WithAList(w, T_max=5))
    runner = SimpleNamespace(optim_wrapper=merged, param_schedulers=[scheduler])
    with pytest.raises(ValueError, match=r"_WithAList.scales is a list of 4.*per_group_keys"):
        MergedParamGroupsSchedulerStateHook().before_train(runner)
    hook = MergedParamGroupsSchedulerStateHook(per_group_keys=['scales'])
    hook.before_train(runner)
    checkpoint = {'param_schedulers': [dict(scheduler.state_dict())]}
    hook.before_save_checkpoint(runner, checkpoint)
    assert checkpoint['param_schedulers'][0]['scales'] == [1.0, 2.0, 2.0, 2.0, 3.0, 2.0, 4.0]
    MergedParamGroupsSchedulerStateHook(not_per_group_keys=['scales']).before_train(runner)


def test_a_merged_layout_written_without_the_hook_resumes_merged_and_is_refused_unmerged(
        tmp_path, uninterrupted):
    """Checkpoints the merged constructor wrote before the hook was in the runtime: their
    schedulers hold the merged layout (three groups and the base one), which the merged
    constructor resumes exactly and the default one, without the check, would misread."""
    hooks = [h for h in RUNTIME_HOOKS if h['type'] != 'MergedParamGroupsSchedulerStateHook']
    _train(tmp_path / 'written', True, SAVED, custom_hooks=hooks)
    path = tmp_path / 'written' / f'iter_{SAVED}.pth'
    saved = torch.load(path, weights_only=True)
    assert [len(s['base_values']) for s in saved['param_schedulers']] == [4, 4]
    runner = _train(tmp_path / 'merged', True, ITERS, load_from=str(path), resume=True)
    assert _outcome(runner)[:2] == uninterrupted[True][:2]
    with pytest.raises(ValueError, match=r'(?s)CosineAnnealingLR.base_values holds 4 values '
                       r'for the 7 groups.*resume with that constructor'):
        _train(tmp_path / 'default', False, ITERS, load_from=str(path), resume=True)


def test_a_one_group_merge_without_the_base_groups_value_is_refused():
    """A one-group merge keeps mmengine's base-settings group, so its schedulers hold two
    values; a state of one (what the merged constructor saved before it kept that group)
    would leave the base group's value to be made up."""
    cfg = paramwise_wrapper_cfg(True)
    cfg['paramwise_cfg'] = dict(custom_keys={'no such parameter': dict(lr_mult=2.0)})
    merged = build_optim_wrapper(ParamwiseNet(), cfg)
    assert len(merged.optimizer.param_groups) == 1 and len(merged.param_groups) == 2
    scheduler = CosineAnnealingLR(merged, T_max=5)
    runner = SimpleNamespace(optim_wrapper=merged, param_schedulers=[scheduler])
    hook = MergedParamGroupsSchedulerStateHook()
    hook.before_train(runner)
    state = scheduler.state_dict()
    scheduler.load_state_dict({**state, 'base_values': state['base_values'][:1],
                               '_last_value': state['_last_value'][:1]})
    with pytest.raises(ValueError, match=r"(?s)base_values holds 1 values for the 2 groups.*"
                       r"no value for that group.*load only its weights"):
        hook.before_train(runner)


@pytest.mark.parametrize('merged', [False, True])
def test_a_scheduler_built_on_the_torch_optimizer_is_checked_against_its_groups(merged):
    """Its lists hold one value per group of the torch optimizer, without the wrapper's base
    group: what it was built on decides the count, on a run that never resumed."""
    wrapper = build_optim_wrapper(ParamwiseNet(), paramwise_wrapper_cfg(merged))
    scheduler = CosineAnnealingLR(wrapper.optimizer, T_max=5)
    assert len(scheduler.state_dict()['base_values']) == len(wrapper.param_groups) - 1
    runner = SimpleNamespace(optim_wrapper=wrapper, param_schedulers=[scheduler])
    MergedParamGroupsSchedulerStateHook().before_train(runner)
