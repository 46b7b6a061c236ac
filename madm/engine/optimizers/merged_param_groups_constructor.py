"""An optimizer constructor that keeps one parameter group per set of hyper-parameters.

mmengine's ``DefaultOptimWrapperConstructor`` with a ``paramwise_cfg`` makes one group per
parameter (769 for MADM at SD-1.4 size, with two settings among them). ``torch.optim.AdamW``'s
``foreach`` and ``fused`` implementations run once per group, so each of them then launches
its kernels per parameter, and ``step()`` pays its Python bookkeeping per parameter too.
A parameter's update does not depend on which group holds it, so merging the groups of equal
settings changes how many calls a step makes, not the updates. One thing moves: the global
gradient-norm clip sums the parameters in group order, so its norm may round its last bit
differently. ``foreach`` AdamW's temporaries then span a whole group (up to one copy of the
trainable weights); fused AdamW has none (docs/benchmarks.md, fourteenth session).

The optimizer's ``state_dict`` keeps mmengine's one-group-per-parameter layout, so
checkpoints do not depend on the merge: a run resumes across the switch in either direction,
and checkpoints written in the merged layout (before this) still load. The parameter
schedulers' lists of one value per group follow with
:class:`madm.engine.hooks.MergedParamGroupsSchedulerStateHook` (in the runtime's
``custom_hooks``), which finds the layout with :func:`unmerged_layout`.
"""
import functools
import weakref
from collections.abc import Hashable

import torch
import torch.nn as nn
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmseg.registry import OPTIM_WRAPPER_CONSTRUCTORS

# Where each parameter of the one-group-per-parameter layout sits in the merged groups:
# one list per unmerged group, of (merged group index, position in that group). Positions,
# not tensors: the optimizer's hooks keep no reference to its parameters.
Layout = list[list[tuple[int, int]]]

# The layout of each optimizer that saves in it; weak keys, and a copy of the optimizer (which
# loses torch's hooks) is not in it, so this says what the optimizer's state_dict really does.
_LAYOUTS: weakref.WeakKeyDictionary[torch.optim.Optimizer, Layout] = weakref.WeakKeyDictionary()


def _hashable(value: object) -> Hashable:
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def merge_param_groups(groups: list[dict]) -> list[dict]:
    """Merge parameter groups whose settings (every key but ``params``) are equal.

    Args:
        groups (list[dict]): Parameter groups, each with a ``params`` list.

    Returns:
        list[dict]: One group per distinct setting, in the order each setting first
        appears, its parameters in their original order.
    """
    merged: dict[Hashable, dict] = {}
    for group in groups:
        settings = {k: v for k, v in group.items() if k != 'params'}
        key = _hashable(settings)
        if key not in merged:
            merged[key] = dict(settings, params=[])
        merged[key]['params'].extend(group['params'])
    return list(merged.values())


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class MergedParamGroupsOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """``DefaultOptimWrapperConstructor`` whose param-wise groups are merged by setting.

    The same ``paramwise_cfg`` rules give each parameter the same learning rate and weight
    decay as the default constructor; parameters that share them share a group
    (:func:`merge_param_groups`). Use it with
    ``optim_wrapper=dict(constructor='MergedParamGroupsOptimWrapperConstructor', ...)``.
    The optimizer saves and loads its state in the default constructor's layout
    (:func:`keep_unmerged_state_dict_layout`), so its checkpoints and the default
    constructor's are interchangeable; the parameter schedulers' own per-group lists too with
    :class:`madm.engine.hooks.MergedParamGroupsSchedulerStateHook` in ``custom_hooks``. Merged
    into one group, the wrapper keeps mmengine's extra base-settings group that the default
    constructor's many groups have, so the schedulers see the same groups but for the merge.
    """

    _layout: Layout | None = None

    def __call__(self, model: nn.Module) -> OptimWrapper:
        self._layout: Layout | None = None
        optim_wrapper = super().__call__(model)
        if self._layout is not None:  # None without paramwise_cfg: mmengine's one group
            keep_unmerged_state_dict_layout(optim_wrapper.optimizer, self._layout)
            if optim_wrapper.base_param_settings is None and len(self._layout) > 1:
                # OptimWrapper adds it for more than one group; its schedulers keep a value for
                # it, which a resume across the switch would otherwise have to make up or drop
                optim_wrapper.base_param_settings = {
                    'params': torch.tensor([0.0]), **optim_wrapper.optimizer.defaults}
        return optim_wrapper

    def add_params(self, params: list[dict], module: nn.Module, prefix: str = '',
                   is_dcn_module: int | float | None = None) -> None:
        super().add_params(params, module, prefix, is_dcn_module)
        if not prefix:  # the top-level call, after every submodule has added its groups
            merged = merge_param_groups(params)
            where = {id(p): (k, i) for k, group in enumerate(merged)
                     for i, p in enumerate(group['params'])}
            self._layout = [[where[id(p)] for p in group['params']] for group in params]
            params[:] = merged


def keep_unmerged_state_dict_layout(optimizer: torch.optim.Optimizer, layout: Layout) -> None:
    """Make a merged-group optimizer save and load its state in the unmerged layout.

    Registers a ``state_dict`` post-hook that splits each merged group into the unmerged
    groups it holds (each with the merged group's current settings, as the unmerged
    optimizer would have them) and a ``load_state_dict`` pre-hook that merges such a state
    back. A state already in the merged layout loads as it is. torch does not copy an
    optimizer's hooks, so a ``copy.deepcopy`` or an unpickled copy of the optimizer saves and
    loads the merged layout only (and :func:`unmerged_layout` then gives ``None``).
    mmengine's parameter schedulers save lists of one value per group of their own
    (``base_values``, ...), which the cosine ones pair with the groups: in a Runner,
    :class:`madm.engine.hooks.MergedParamGroupsSchedulerStateHook` saves and loads those in
    the unmerged layout too.

    Args:
        optimizer (torch.optim.Optimizer): The optimizer over the merged groups.
        layout (Layout): For each unmerged group, the (merged group, position) of each of
            its parameters, in order.
    """
    optimizer.register_state_dict_post_hook(functools.partial(_split_state, layout=layout))
    optimizer.register_load_state_dict_pre_hook(functools.partial(_merge_state, layout=layout))
    _LAYOUTS[optimizer] = layout


def unmerged_layout(optimizer: torch.optim.Optimizer) -> Layout | None:
    """The layout ``optimizer`` saves its state in, or ``None`` if it saves its own groups.

    Args:
        optimizer (torch.optim.Optimizer): A torch optimizer (``OptimWrapper.optimizer``).

    Returns:
        Layout | None: What :func:`keep_unmerged_state_dict_layout` registered for it.
    """
    return _LAYOUTS.get(optimizer)


def _settings(group: dict) -> dict:
    return {k: v for k, v in group.items() if k not in ('params', 'param_names')}


def _split_state(optimizer: torch.optim.Optimizer, state_dict: dict, *, layout: Layout) -> dict:
    groups = state_dict['param_groups']
    state, split, index = {}, [], 0
    for positions in layout:
        merged = groups[positions[0][0]]
        group = dict(_settings(merged), params=[])
        if 'param_names' in merged:
            group['param_names'] = [merged['param_names'][i] for _, i in positions]
        for k, i in positions:
            old = groups[k]['params'][i]
            if old in state_dict['state']:
                state[index] = state_dict['state'][old]
            group['params'].append(index)
            index += 1
        split.append(group)
    return {'state': state, 'param_groups': split}


def _merge_state(optimizer: torch.optim.Optimizer, state_dict: dict, *, layout: Layout) -> dict:
    groups = state_dict['param_groups']
    sizes = [len(g['params']) for g in groups]
    if sizes == [len(g['params']) for g in optimizer.param_groups]:
        return state_dict  # the merged layout
    if sizes != [len(positions) for positions in layout]:
        raise ValueError(
            f'The optimizer state to load has {len(groups)} parameter groups of '
            f'{sum(sizes)} parameters in all; this optimizer holds {sum(map(len, layout))} '
            f'parameters in {len(optimizer.param_groups)} merged groups (one per setting) or '
            f'{len(layout)} unmerged ones. The checkpoint was written for another model or '
            "another optim_wrapper.paramwise_cfg; to keep its weights and not its optimizer "
            "state, load it with load_from= instead of resume.")
    # (stored index, its group, position there) of every parameter, by merged position
    by_position: dict[tuple[int, int], tuple[int, dict, int]] = {}
    for positions, group in zip(layout, groups):
        for j, ((k, i), old) in enumerate(zip(positions, group['params'])):
            by_position[k, i] = old, group, j
    state, merged, index = {}, [], 0
    for k, live in enumerate(optimizer.param_groups):
        first = by_position[k, 0][1]
        group = dict(_settings(first), params=[])
        names = [] if 'param_names' in first else None
        for i in range(len(live['params'])):
            old, source, j = by_position[k, i]
            if _hashable(_settings(source)) != _hashable(_settings(first)):
                raise ValueError(
                    'The optimizer state to load gives different settings to parameters '
                    f'that share a merged group ({_settings(first)} and '
                    f'{_settings(source)}): it was written with another '
                    'optim_wrapper.paramwise_cfg. Resume with the constructor and '
                    'paramwise_cfg it was written with, or load only its weights (load_from=).')
            if old in state_dict['state']:
                state[index] = state_dict['state'][old]
            if names is not None:
                names.append(source['param_names'][j])
            group['params'].append(index)
            index += 1
        if names is not None:
            group['param_names'] = names
        merged.append(group)
    return {'state': state, 'param_groups': merged}
