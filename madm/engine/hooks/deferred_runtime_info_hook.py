from __future__ import annotations

from mmengine.hooks import LoggerHook, RuntimeInfoHook
from mmengine.runner.checkpoint import apply_to
from mmseg.registry import HOOKS

from madm.utils.deferred_scalars import DeferredScalars, defer_grad_norm_log


@HOOKS.register_module()
class DeferredRuntimeInfoHook(RuntimeInfoHook):
    """mmengine's ``RuntimeInfoHook``, with the step's log values left on the device until read.

    The default hook turns each value of the model's ``log_vars`` into a Python number after
    every iteration, and the optimiser wrapper does the same with the gradient norm in the
    middle of the step: on a GPU, each makes the host wait for the device. This hook keeps
    the losses and the gradient norm as tensors (:class:`~madm.utils.deferred_scalars.
    DeferredScalars`) and logs them all, in order, when they are about to be read: at every
    ``LoggerHook``'s iterations (its ``interval`` and the end of an epoch), before a
    checkpoint is saved, before validation, at the end of training, and when a key is logged
    for the first time (which keeps the keys in the default order). The message hub then
    holds the same history as with the default hook wherever it is read, and the host waits
    for the device once per logging interval instead of at every iteration. Between those
    points the message hub lags behind the step; a custom hook that reads a training scalar
    at every iteration should use the default hook (or set ``flush_interval=1``).

    With fp16 and a dynamic loss scale (``AmpOptimWrapper``'s GradScaler) the step keeps one
    host sync whatever this hook does: the scaler checks the gradients for infinities with
    ``.item()`` before every optimiser step.

    Use it in a config with ``default_hooks = dict(runtime_info=dict(
    type='DeferredRuntimeInfoHook'))``. It changes when values are logged, never the values
    or the training: weights, EMA teacher, optimiser and random streams are those of the
    default hook.

    Args:
        flush_interval (int | None): Also log every ``flush_interval`` iterations, besides
            the points above. None (default) adds none, unless the runner has no
            ``LoggerHook``: then every iteration is logged at once, as by the default hook.
    """

    def __init__(self, flush_interval: int | None = None) -> None:
        super().__init__()
        if flush_interval is not None and flush_interval < 1:
            raise ValueError(f'flush_interval must be at least 1, got {flush_interval}')
        self.flush_interval = flush_interval
        self._intervals: list[int] = []
        self._scalars = DeferredScalars()
        self._restore_clip = None

    def before_train(self, runner) -> None:
        super().before_train(runner)
        loggers = [hook for hook in runner.hooks if isinstance(hook, LoggerHook)]
        self._intervals = [hook.interval for hook in loggers]
        if self.flush_interval is not None or not loggers:
            self._intervals.append(self.flush_interval or 1)
        self._restore_clip = defer_grad_norm_log(runner.optim_wrapper, self._scalars)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: dict | None = None) -> None:
        logged = runner.message_hub.log_scalars
        first_seen = False
        for key, value in (outputs or {}).items():
            first_seen = first_seen or f'train/{key}' not in logged
            self._scalars.add(f'train/{key}', value)
        # A key's first value is logged at once, so that the message hub (and the log lines,
        # which follow its order) list the keys in the order the default hook gives them.
        if (first_seen
                or any(self.every_n_inner_iters(batch_idx, n) for n in self._intervals)
                or self.end_of_epoch(runner.train_dataloader, batch_idx)
                or self.is_last_train_iter(runner)):
            self._scalars.flush(runner.message_hub)

    def before_val(self, runner) -> None:
        self._scalars.flush(runner.message_hub)
        super().before_val(runner)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # The runner copies the message hub into the checkpoint before calling this hook, so
        # the copy is made again; this hook runs first (VERY_HIGH), before any hook that
        # encodes the checkpoint (WeightsOnlyCheckpointHook, LOWEST).
        if len(self._scalars):
            self._scalars.flush(runner.message_hub)
            checkpoint['message_hub'] = apply_to(runner.message_hub.state_dict(),
                                                 lambda x: hasattr(x, 'cpu'), lambda x: x.cpu())

    def after_train(self, runner) -> None:
        self._scalars.flush(runner.message_hub)
        if self._restore_clip is not None:
            self._restore_clip()
            self._restore_clip = None
        super().after_train(runner)
