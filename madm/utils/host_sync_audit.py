"""Find, without a GPU, the calls of a step that would make the host wait for a CUDA device.

On a GPU, ``torch.cuda.set_sync_debug_mode`` names each synchronising call
(:func:`madm.utils.benchmark.count_host_syncs`). This module finds the same kinds of call
in a run on the ``meta`` device, which holds no values and, like CUDA, refuses most ops
that mix a host tensor with dimensions and a device tensor. Every operator call is checked
against the rules CUDA synchronises on:

* reading a device value on the host: ``.item()``, ``float()``, ``bool()``, ``.tolist()``
  (``aten._local_scalar_dense``), ``torch.equal``, and the status check of ``torch.linalg``;
* an output whose shape depends on device values: ``torch.unique``, ``nonzero``,
  ``masked_select``, boolean-mask indexing, ``bincount``, ``repeat_interleave`` without
  ``output_size``;
* a copy of host memory to the device without ``non_blocking=True``, explicit
  (``.to(device)``, ``torch.tensor(..., device=)``, ``Tensor.new_tensor``) or implicit
  (an index given as a host tensor or a Python list), and a blocking copy back to the host
  (``.cpu()``).

What it cannot see: waits inside libraries below the operator level (cuDNN autotuning,
NCCL), a non-blocking copy from memory that is not pinned (the meta device has no pinned
memory: every ``non_blocking=True`` copy passes), calls that run only on CUDA paths, and a
constructor imported by name (``from torch import tensor``) rather than called as
``torch.tensor``. Meta accepts a few device mixes that CUDA rejects (``index_select`` with a
host index): the audit looks for waits, not for device errors. The constructor and
indexing patches are process-wide while the audit runs, so calls from other threads are
recorded too. It is a check of the code, not a measurement; the GPU count remains the
measurement.

Calls whose result a meta tensor cannot compute get a placeholder, so that one audit
finds every sync of a step: ``_local_scalar_dense`` gives 0 (``False`` for booleans), a
copy to the host gives zeros, ``unique`` gives one element, and a boolean mask, ``nonzero``
and ``masked_select`` select every element. The other value-dependent calls
(``bincount``, ``repeat_interleave``, ``unique_consecutive``, ...) are recorded, then raise.
"""
import contextlib
import os
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from unittest import mock

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

_aten = torch.ops.aten

_READS_VALUE = {
    _aten._local_scalar_dense.default: 'reads a device value on the host',
    _aten.equal.default: 'reads a device comparison on the host',
    _aten._linalg_check_errors.default: 'checks a torch.linalg status on the host',
}
_VALUE_DEPENDENT_SHAPE = {
    _aten._unique2.default, _aten.unique_dim.default, _aten.unique_consecutive.default,
    _aten.nonzero.default, _aten.masked_select.default, _aten.bincount.default,
}
_INDEX_OPS = {_aten.index.Tensor, _aten.index_put.default, _aten.index_put_.default,
              _aten._index_put_impl_.default}
_THIS_FILE = os.path.abspath(__file__)
_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__))


@dataclass(frozen=True)
class HostSync:
    """One call that would make the host wait for a CUDA device.

    Attributes:
        op (str): The operator (``aten.<name>``) or Python constructor.
        reason (str): Why CUDA synchronises there.
        where (str): ``file:line (function)`` of the innermost caller outside torch.
    """

    op: str
    reason: str
    where: str


def _on_device(x: object) -> bool:
    return isinstance(x, Tensor) and x.device.type != 'cpu'


def _host_with_dims(x: object) -> bool:
    return isinstance(x, Tensor) and x.device.type == 'cpu' and x.dim() > 0


def _tensors(args: tuple, kwargs: dict) -> Iterator[Tensor]:
    for value in list(args) + list(kwargs.values()):
        if isinstance(value, Tensor):
            yield value
        elif isinstance(value, (list, tuple)):
            yield from (v for v in value if isinstance(v, Tensor))


def _caller() -> str:
    """The innermost stack frame outside torch and this module, as ``file:line (function)``."""
    for frame in reversed(traceback.extract_stack()[:-1]):
        path = os.path.abspath(frame.filename)
        if path == _THIS_FILE or path.startswith(_TORCH_DIR):
            continue
        if 'site-packages' in path.split(os.sep):  # a library: from its package name on
            shown = path.split(os.sep + 'site-packages' + os.sep, 1)[1]
        else:
            shown = os.path.relpath(path)
            shown = path if shown.startswith('..') else shown
        return f'{shown}:{frame.lineno} ({frame.name})'
    return '<unknown>'


def _sync_reason(func, args: tuple, kwargs: dict) -> str | None:
    """Why ``func(*args, **kwargs)`` would synchronise on CUDA, or None."""
    tensors = list(_tensors(args, kwargs))
    if func in _READS_VALUE:
        return _READS_VALUE[func] if any(_on_device(t) for t in tensors) else None
    if func in _VALUE_DEPENDENT_SHAPE or (func is _aten.repeat_interleave.Tensor
                                          and kwargs.get('output_size') is None):
        return ('its output shape depends on device values'
                if any(_on_device(t) for t in tensors) else None)
    if func in _INDEX_OPS and _on_device(args[0]):
        indices = args[1] if len(args) > 1 else kwargs.get('indices', ())
        if any(isinstance(i, Tensor) and i.dtype == torch.bool for i in indices):
            return 'a boolean mask index: its output shape depends on device values'
        if any(_host_with_dims(i) for i in indices):  # CUDA copies a host index over
            return 'a host tensor as an index of a device tensor: an implicit blocking copy'
    if func is _aten._to_copy.default:
        target = kwargs.get('device')
        if target is None or kwargs.get('non_blocking', False):
            return None
        return _copy_reason(src=args[0].device, dst=torch.device(target))
    if func in (_aten.copy_.default, _aten.copy.default):
        dst, src = args[0], args[1]
        non_blocking = args[2] if len(args) > 2 else kwargs.get('non_blocking', False)
        if non_blocking or not isinstance(src, Tensor):
            return None
        return _copy_reason(src=src.device, dst=dst.device)
    return None


def _copy_reason(src: torch.device, dst: torch.device) -> str | None:
    if src.type == 'cpu' and dst.type != 'cpu':
        return 'a blocking copy from the host to the device'
    if src.type != 'cpu' and dst.type == 'cpu':
        return 'a blocking copy from the device to the host'
    return None


def _placeholder(func, args: tuple, kwargs: dict):
    """A result for the calls a meta tensor cannot compute, or NotImplemented."""
    x = args[0] if args else None
    if func is _aten.copy_.default and isinstance(x, Tensor) and x.device.type == 'cpu' \
            and isinstance(args[1], Tensor) and args[1].device.type == 'meta':
        return x.zero_()
    if not (isinstance(x, Tensor) and x.device.type == 'meta'):
        return NotImplemented
    if func is _aten._local_scalar_dense.default:
        return False if x.dtype == torch.bool else (0.0 if x.is_floating_point() else 0)
    if func is _aten.equal.default:
        return True
    if func is _aten._to_copy.default and kwargs.get('device') is not None \
            and torch.device(kwargs['device']).type == 'cpu':
        return torch.zeros(x.shape, dtype=kwargs.get('dtype') or x.dtype)
    if func is _aten.nonzero.default:
        return torch.empty(x.numel(), x.dim(), dtype=torch.long, device='meta')
    if func is _aten.masked_select.default:
        return x.new_empty(torch.broadcast_shapes(x.shape, args[1].shape).numel())
    if func is _aten._unique2.default:
        # _unique2(self, sorted, return_inverse, return_counts)
        flags = list(args[1:]) + [False] * (3 - len(args[1:]))
        return_inverse = kwargs.get('return_inverse', flags[1])
        return_counts = kwargs.get('return_counts', flags[2])
        long = dict(dtype=torch.long, device='meta')
        return (x.new_empty(1), torch.empty(x.shape if return_inverse else (0, ), **long),
                torch.empty(1 if return_counts else 0, **long))
    if func is _aten.index.Tensor and any(
            i is not None and i.dtype == torch.bool for i in args[1]):
        indices = []
        for index in args[1]:
            if index is not None and index.dtype == torch.bool:
                everything = torch.empty(index.numel(), dtype=torch.long, device='meta')
                indices.extend([everything] * index.dim())
            else:
                indices.append(index)
        return func(x, indices)
    return NotImplemented


class MetaPlaceholders(TorchDispatchMode):
    """Give the value-dependent calls of a step a result on ``meta`` tensors.

    ``torch.unique`` returns one element; a boolean mask, ``nonzero`` and ``masked_select``
    select every element; ``.item()`` returns 0 and a copy to the host zeros. Used to run a
    whole step on ``meta`` (FLOP counts, the host-sync audit), where such results never feed
    a counted matmul or convolution. Real tensors pass untouched.
    """

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = _placeholder(func, args, kwargs)
        return func(*args, **kwargs) if result is NotImplemented else result


class HostSyncAudit(MetaPlaceholders):
    """Record the calls that would make the host wait for a CUDA device (module docstring).

    Use it around code that runs on ``meta`` (on CUDA it records the same calls, which then
    still wait)::

        with HostSyncAudit() as audit:
            model.train_step(batch, optim_wrapper)
        print(audit.summary())

    ``torch.tensor``, ``torch.as_tensor`` and ``Tensor.new_tensor`` copy their data inside
    the constructor, where a dispatch mode does not see it, and so does indexing with a
    Python list (``x[[2, 1, 0]]`` builds the index on ``x``'s device); while the audit is
    active, these are wrapped to record the copy.

    Attributes:
        syncs (list[HostSync]): Every recorded call, in order.
    """

    def __init__(self) -> None:
        super().__init__()
        self.syncs: list[HostSync] = []
        self._patches = contextlib.ExitStack()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        reason = _sync_reason(func, args, kwargs)
        if reason is not None:
            self.syncs.append(HostSync(str(func.overloadpacket), reason, _caller()))
        return super().__torch_dispatch__(func, types, args, kwargs)

    def __enter__(self) -> 'HostSyncAudit':
        self._patches.__enter__()
        # mock.patch.object also undoes a patch of an inherited attribute (Tensor.new_tensor).
        for owner, name in ((torch, 'tensor'), (torch, 'as_tensor'), (torch.Tensor, 'new_tensor')):
            self._patches.enter_context(
                mock.patch.object(owner, name, _recording_constructor(self, owner, name)))
        for name in ('__getitem__', '__setitem__'):
            self._patches.enter_context(
                mock.patch.object(torch.Tensor, name, _recording_list_index(self, name)))
        return super().__enter__()

    def __exit__(self, *exc_info) -> None:
        try:
            super().__exit__(*exc_info)
        finally:
            self._patches.__exit__(*exc_info)

    def summary(self) -> dict:
        """``total``, ``where`` (``'file:line (function)'`` → count, most frequent first) and
        ``why`` (the same keys → reason).

        ``total`` and ``where`` have the format of
        :func:`madm.utils.benchmark.count_host_syncs`.
        """
        counts = Counter(s.where for s in self.syncs)
        why = {s.where: s.reason for s in self.syncs}
        return {'total': len(self.syncs), 'where': dict(counts.most_common()),
                'why': {where: why[where] for where, _ in counts.most_common()}}


def _recording_constructor(audit: HostSyncAudit, owner: object, name: str) -> Callable:
    """``owner.name`` wrapped to record a copy to a device that happens inside it."""
    original = getattr(owner, name)

    def constructor(*args, **kwargs):
        result = original(*args, **kwargs)
        positional = args[1:] if owner is torch.Tensor else args
        data = positional[0] if positional else kwargs.get('data')
        # A tensor's copy is a dispatched _to_copy, which the mode records itself.
        if not isinstance(data, Tensor) and isinstance(result, Tensor) \
                and result.device.type != 'cpu':
            audit.syncs.append(HostSync(f'torch.{name}', 'a blocking copy from the host to '
                                        'the device (in the constructor)', _caller()))
        return result

    return constructor


def _holds_list(index: object) -> bool:
    """Whether an index has a part that is a Python list (a numpy array is copied by a
    dispatched ``_to_copy``, which the dispatch mode sees)."""
    parts = index if isinstance(index, tuple) else (index, )
    return any(isinstance(p, list) for p in parts)


def _recording_list_index(audit: HostSyncAudit, name: str) -> Callable:
    """``Tensor.name`` (``__getitem__``/``__setitem__``) wrapped to record a list index."""
    original = getattr(torch.Tensor, name)

    def indexing(self, index, *value):
        if self.device.type != 'cpu' and _holds_list(index):
            audit.syncs.append(HostSync(f'Tensor.{name}', 'an index given as a Python list: '
                                        'a blocking copy to the device', _caller()))
        return original(self, index, *value)

    return indexing
