from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mmengine.hooks import Hook
from mmengine.optim import OptimWrapper, OptimWrapperDict
from mmseg.registry import HOOKS

from madm.engine.optimizers import Layout, unmerged_layout

#: Keys of the parameter schedulers' states (mmengine's and mmseg's) whose lists hold one value
#: per group of the optimizer wrapper: every scheduler's ``base_values`` and ``_last_value``,
#: ``ReduceOnPlateau*``'s ``min_values``, ``OneCycle*``'s ``eta_max`` when given per group.
PER_GROUP_KEYS = ('base_values', '_last_value', 'min_values', 'eta_max')
#: Their lists that are not per group, whatever their length: ``OneCycle*``'s phases (2 or 3,
#: as many as MADM's merged groups), ``CosineRestart*``'s periods and weights.
NOT_PER_GROUP_KEYS = ('_schedule_phases', 'periods', 'restart_weights', 'cumulative_periods')

_ADVICE = ('If the checkpoint was written for another model or another '
           'optim_wrapper.paramwise_cfg, resume with the constructor and paramwise_cfg it was '
           'written with, or load only its weights (load_from= instead of resume).')
_MERGED_LAYOUT_ADVICE = (
    'If MergedParamGroupsOptimWrapperConstructor wrote it without '
    'MergedParamGroupsSchedulerStateHook in custom_hooks (its schedulers then saved the merged '
    'layout), resume with that constructor.')
_ONE_GROUP_ADVICE = (
    'If the merged constructor wrote it for one merged group before it kept mmengine\'s '
    'base-settings group (2026-11-28), its schedulers have no value for that group: load only '
    'its weights (load_from=), as the base value cannot be recovered.')


@dataclass(frozen=True)
class _Groups:
    """An optimizer wrapper's groups as its schedulers count them, merged and unmerged."""

    layout: Layout
    merged: int  # len(wrapper.param_groups), mmengine's base-settings group included
    base: bool  # whether that group is there (last), in both layouts

    @property
    def unmerged(self) -> int:
        return len(self.layout) + self.base

    def split(self, values: list | tuple) -> list | tuple:
        split = [values[positions[0][0]] for positions in self.layout]
        return type(values)(split + list(values[-1:] if self.base else []))

    def merge(self, values: list | tuple) -> list | tuple | str:
        """The merged list, or why there is none."""
        merged: dict[int, object] = {}
        for j, positions in enumerate(self.layout):
            k, value = positions[0][0], values[j]
            if k in merged and not _equal(merged[k], value):
                return (f'gives different values ({merged[k]!r} and {value!r}) to parameter '
                        f'groups that share merged group {k}')
            merged.setdefault(k, value)
        out = [merged[k] for k in range(len(merged))]
        return type(values)(out + list(values[-1:] if self.base else []))


@HOOKS.register_module()
class MergedParamGroupsSchedulerStateHook(Hook):
    """Save the parameter schedulers' per-group state in the unmerged layout, and load either.

    ``MergedParamGroupsOptimWrapperConstructor``'s optimizer saves its state in mmengine's
    one-group-per-parameter layout, but the schedulers keep lists of one value per group of
    their own (:data:`PER_GROUP_KEYS`), which the cosine ones pair with the groups: resumed
    across a switch of constructor, some groups would get stale learning rates, silently.
    Before a checkpoint is written this hook splits those lists into the unmerged layout (each
    unmerged group gets its merged group's value), and after one is loaded it merges lists of
    the unmerged layout back; lists already in the optimizer's layout pass unchanged. So
    checkpoints of the two constructors are interchangeable, schedulers included, also with an
    ``OptimWrapperDict`` (each wrapper with its own layout).

    A list that does not convert (another model or ``paramwise_cfg``, values that differ
    within a merged group) is left as it is, as a ``load_from`` of such a checkpoint never uses
    it; if a resume loaded it into the schedulers, ``before_train`` raises a ``ValueError``
    saying why and what to do, before the first step. ``before_train`` checks every optimizer
    wrapper, merged or not: a checkpoint whose schedulers hold the merged layout, resumed with
    the default constructor (one written without this hook in ``custom_hooks``), would otherwise
    pair its values with the wrong groups, as mmengine pairs them by position and stops at the
    shorter list. A checkpoint of a one-group merge written before the merged constructor
    kept mmengine's base-settings group for it (2026-11-28) is refused too: its lists hold one
    value where the schedulers now keep two, and the base group's would have to be made up.
    A list of a key this hook does not know, as long as either layout's groups, raises too:
    declare the key in ``per_group_keys`` or ``not_per_group_keys``. Nothing is converted
    where no optimizer is merged, nor where the optimizer wrapper is not built yet (the Runner
    builds it before resuming in ``train``).

    Args:
        per_group_keys (Sequence[str]): More state keys with one value per group.
        not_per_group_keys (Sequence[str]): More state keys whose lists are not per group.
    """

    def __init__(self, per_group_keys: Sequence[str] = (),
                 not_per_group_keys: Sequence[str] = ()) -> None:
        self.per_group_keys = frozenset(PER_GROUP_KEYS) | frozenset(per_group_keys)
        self.not_per_group_keys = frozenset(NOT_PER_GROUP_KEYS) | frozenset(not_per_group_keys)
        both = self.per_group_keys & self.not_per_group_keys
        if both:
            raise ValueError(f'Keys declared both per group and not: {sorted(both)}')
        self._load_problems: list[str] = []

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        for groups, states in _by_wrapper(runner.optim_wrapper,
                                          checkpoint.get('param_schedulers')):
            problems = [p for state in states for p in self._convert(state, groups, split=True)]
            if problems:  # before_train checked the live state: a Runner does not get here
                raise ValueError(' '.join(problems))

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # a load_from never uses these states, so what does not convert only matters if a
        # resume loads it: before_train finds out
        self._load_problems = [
            p for groups, states in _by_wrapper(runner.optim_wrapper,
                                                checkpoint.get('param_schedulers'))
            for state in states for p in self._convert(state, groups, split=False)]

    def before_train(self, runner) -> None:
        load_problems, self._load_problems = self._load_problems, []
        unknown, wrong, hints = [], [], {}
        for wrapper, schedulers in _pairs(runner.optim_wrapper, runner.param_schedulers):
            groups = _groups(wrapper)
            for scheduler in schedulers:
                # the wrapper's groups (its base one included), or a torch optimizer's
                count = len(getattr(scheduler, 'optimizer', wrapper).param_groups)
                for key, values in self._lists(scheduler.state_dict()):
                    name = f'{type(scheduler).__name__}.{key}'
                    if key not in self.per_group_keys:
                        # without a merge nothing converts, so a list of either kind fits
                        if groups is not None and len(values) in (groups.merged, groups.unmerged):
                            unknown.append(self._unknown(name, values, groups))
                    elif len(values) != count:
                        wrong.append(f'{name} holds {len(values)} values for the {count} '
                                     'groups of its optimizer.')
                        if len(values) == 1:
                            hints[_ONE_GROUP_ADVICE] = None
                        elif groups is None and len(values) < count - 1:
                            hints[_MERGED_LAYOUT_ADVICE] = None
        if unknown:
            raise ValueError(' '.join(unknown))
        if wrong:
            raise ValueError(' '.join(
                ['The resumed parameter-scheduler state does not fit the parameter groups:',
                 *wrong, *load_problems, *hints, _ADVICE]))

    def _lists(self, state: dict) -> Iterable[tuple[str, list | tuple]]:
        return ((key, value) for key, value in state.items()
                if isinstance(value, (list, tuple)) and key not in self.not_per_group_keys)

    def _convert(self, state: dict, groups: _Groups, *, split: bool) -> list[str]:
        """Bring ``state``'s per-group lists to the unmerged layout (``split``) or the merged
        one, in place; return what did not convert."""
        have, want = ((groups.merged, groups.unmerged) if split
                      else (groups.unmerged, groups.merged))
        problems = []
        for key, values in list(self._lists(state)):
            if key not in self.per_group_keys:
                if len(values) in (groups.merged, groups.unmerged):
                    problems.append(self._unknown(key, values, groups))
            elif len(values) == want:
                continue
            elif len(values) != have:
                problems.append(f'The parameter-scheduler state {key} holds {len(values)} '
                                f'values, for neither the {groups.merged} merged nor the '
                                f'{groups.unmerged} unmerged groups of the optimizer wrapper.')
            elif split:
                state[key] = groups.split(values)
            else:
                merged = groups.merge(values)
                if isinstance(merged, str):
                    problems.append(f'The parameter-scheduler state {key} {merged}.')
                else:
                    state[key] = merged
        return problems

    @staticmethod
    def _unknown(name: str, values: list | tuple, groups: _Groups) -> str:
        return (f'The parameter-scheduler state {name} is a list of {len(values)}, as many as '
                f'the optimizer wrapper has groups ({groups.merged} merged, {groups.unmerged} '
                'unmerged); MergedParamGroupsSchedulerStateHook does not know whether it holds '
                'one value per group. Name it in the per_group_keys or not_per_group_keys of '
                "the hook's entry in custom_hooks.")


def _equal(a: object, b: object) -> bool:
    try:
        return bool(a == b)
    except (RuntimeError, ValueError):  # a tensor of several values
        return False


def _groups(wrapper: OptimWrapper) -> _Groups | None:
    layout = unmerged_layout(wrapper.optimizer)
    if layout is None:
        return None
    base = getattr(wrapper, 'base_param_settings', None) is not None
    merged = len(wrapper.param_groups)
    return None if len(layout) + base == merged else _Groups(layout, merged, base)


def _pairs(optim_wrapper, schedulers) -> list[tuple[OptimWrapper, list]]:
    """Each optimizer wrapper with its schedulers (or their states): one wrapper and a list,
    or an ``OptimWrapperDict`` and a dict of lists by the same names."""
    if not isinstance(optim_wrapper, OptimWrapper) or schedulers is None:
        return []  # not built (a test run's load_from), or no schedulers saved
    if isinstance(optim_wrapper, OptimWrapperDict):
        if not isinstance(schedulers, dict):
            return []  # mmengine's own resume fails on this mismatch
        pairs = [(optim_wrapper[name], schedulers[name]) for name in schedulers
                 if name in optim_wrapper]
    elif isinstance(schedulers, dict):  # the same mismatch
        return []
    else:
        pairs = [(optim_wrapper, schedulers)]
    return pairs


def _by_wrapper(optim_wrapper, schedulers) -> list[tuple[_Groups, list]]:
    """Each merged optimizer wrapper's groups with its schedulers (or their states)."""
    return [(groups, s) for wrapper, s in _pairs(optim_wrapper, schedulers)
            if (groups := _groups(wrapper)) is not None]
