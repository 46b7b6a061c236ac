"""Log values of a training step kept on their device until a logger reads them.

mmengine turns every logged value into a Python number as soon as it is logged: the
``RuntimeInfoHook`` calls ``.item()`` on each loss after every iteration, and the optimiser
wrapper calls ``float()`` on the gradient norm between backward and the optimiser step. On a
GPU each of these makes the host wait until the device has caught up, so the host cannot queue
the next kernels while the last ones run. :class:`DeferredScalars` keeps the tensors instead and
turns them into numbers in one go (one device-to-host copy per device and dtype) when
:meth:`DeferredScalars.flush` is called, that is when something is about to read them.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapper, OptimWrapperDict

__all__ = ['DeferredScalars', 'defer_grad_norm_log']


class DeferredScalars:
    """Scalars to log, in the order they were added, kept as they came until :meth:`flush`.

    Tensors are detached and kept on their device; Python and numpy numbers are kept as they
    are. :meth:`flush` sends them to a :class:`~mmengine.logging.MessageHub` with
    ``update_scalar``, in order, with the values ``update_scalar`` would have stored had each
    been logged at once (a float32 loss becomes the same Python float as its ``.item()``, an
    integer tensor an ``int``).
    """

    def __init__(self) -> None:
        self._pending: list[tuple[str, object]] = []

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, key: str, value: torch.Tensor | np.ndarray | np.number | int | float) -> None:
        """Keep ``value`` for ``key``.

        Checked here (on the host, without reading a device value), so that a bad value fails
        in the iteration that logs it, as with mmengine, rather than at the next flush.
        """
        if isinstance(value, (torch.Tensor, np.ndarray)):
            if math.prod(value.shape) != 1:
                raise ValueError(f'{key!r}: a logged scalar must have one element, '
                                 f'got an array of shape {tuple(value.shape)}')
            if isinstance(value, torch.Tensor):
                value = value.detach()
        elif not isinstance(value, (int, float, np.number)):
            raise TypeError(f'{key!r}: a logged scalar must be a number or a one-element '
                            f'tensor or array, got {type(value).__name__}')
        self._pending.append((key, value))

    def flush(self, message_hub: MessageHub) -> None:
        """Log everything kept into ``message_hub`` and forget it.

        The tensors of one device and dtype come to the host in one copy, so the host waits for
        the device at most once per device (later copies find it idle).
        """
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
        for index, (_, value) in enumerate(pending):
            if isinstance(value, torch.Tensor):
                groups.setdefault((value.device, value.dtype), []).append(index)
        numbers = [value for _, value in pending]
        for indices in groups.values():
            stacked = torch.stack([numbers[i].reshape(()) for i in indices])
            for index, number in zip(indices, stacked.tolist()):
                numbers[index] = number
        for (key, _), number in zip(pending, numbers):
            message_hub.update_scalar(key, number)


def defer_grad_norm_log(optim_wrapper: OptimWrapper | OptimWrapperDict,
                        scalars: DeferredScalars) -> Callable[[], None]:
    """Log the clipped gradient norm of ``optim_wrapper`` into ``scalars`` instead of at once.

    mmengine's ``OptimWrapper._clip_grad`` logs ``float(norm)`` right after clipping, which
    makes the host wait for backward to finish before it can queue the optimiser step. Here
    the wrapper's ``clip_func`` is wrapped: it still clips (``torch.nn.utils.clip_grad_norm_``
    computes the norm and scales the gradients on the device), adds the norm to ``scalars``
    under the key mmengine uses (``train/grad_norm``) and returns None, the value for which
    ``_clip_grad`` logs nothing (as it does for ``clip_grad_value_``). Works for any
    ``OptimWrapper`` subclass (``AmpOptimWrapper`` included) and for each wrapper of an
    ``OptimWrapperDict``; wrappers without norm clipping are left alone.

    Args:
        optim_wrapper (OptimWrapper | OptimWrapperDict): The runner's optimiser wrapper(s).
        scalars (DeferredScalars): Where the norms go until flushed.

    Returns:
        Callable[[], None]: Puts the original ``clip_func`` back.
    """
    wrappers = (list(optim_wrapper.values()) if isinstance(optim_wrapper, OptimWrapperDict)
                else [optim_wrapper])
    undo = []
    for wrapper in wrappers:
        if not getattr(wrapper, 'clip_grad_kwargs', None) or wrapper.grad_name != 'grad_norm':
            continue
        original = wrapper.clip_func
        wrapper.clip_func = _ClipAndKeepNorm(original, scalars, f'train/{wrapper.grad_name}')
        undo.append((wrapper, original))

    def restore() -> None:
        for wrapper, original in undo:
            wrapper.clip_func = original

    return restore


class _ClipAndKeepNorm:
    """``clip_func`` stand-in: clip, keep the norm in ``scalars``, return None."""

    def __init__(self, clip_func: Callable, scalars: DeferredScalars, key: str) -> None:
        self.clip_func = clip_func
        self.scalars = scalars
        self.key = key

    def __call__(self, params, **kwargs) -> None:
        norm = self.clip_func(params, **kwargs)
        if norm is not None:
            self.scalars.add(self.key, norm)
        return None
