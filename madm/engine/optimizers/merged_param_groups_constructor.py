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
"""
from collections.abc import Hashable

import torch.nn as nn
from mmengine.optim import DefaultOptimWrapperConstructor
from mmseg.registry import OPTIM_WRAPPER_CONSTRUCTORS


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
    A checkpoint's optimizer state is stored by group, so a run started with one constructor
    does not resume with the other.
    """

    def add_params(self, params: list[dict], module: nn.Module, prefix: str = '',
                   is_dcn_module: int | float | None = None) -> None:
        super().add_params(params, module, prefix, is_dcn_module)
        if not prefix:  # the top-level call, after every submodule has added its groups
            params[:] = merge_param_groups(params)
