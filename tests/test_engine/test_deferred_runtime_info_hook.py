"""``DeferredRuntimeInfoHook`` in a real mmengine Runner, against mmengine's ``RuntimeInfoHook``."""
import copy
import json
from unittest import mock

import pytest
import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import DataLoader

import madm  # noqa: F401  registers the hook
from madm.engine.hooks import DeferredRuntimeInfoHook

MAX_ITERS, LOG_INTERVAL, CKPT_INTERVAL, SAMPLES, BATCH = 7, 3, 5, 8, 2
KEYS = ('train/loss', 'train/loss_fit', 'train/loss_reg', 'train/grad_norm')


class _Regression(BaseModel):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        pred = self.linear(torch.stack(inputs)).squeeze(1)
        if mode != 'loss':
            return pred
        return dict(loss_fit=(pred - torch.stack(data_samples)).pow(2).mean() * 10,
                    loss_reg=self.linear.weight.abs().sum())


class _Probe(Hook):
    """After the runtime-info hook and before the logger: what a reader sees, and the
    message hub as saved in each checkpoint."""

    priority = 'NORMAL'

    def __init__(self) -> None:
        self.seen, self.saved = [], {}

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        scalars = runner.message_hub.log_scalars
        self.seen.append(len(scalars['train/loss'].data[0]) if 'train/loss' in scalars else 0)

    def before_save_checkpoint(self, runner, checkpoint):
        self.saved[runner.iter + 1] = copy.deepcopy(checkpoint['message_hub']['log_scalars'])


class _ScalarReads(TorchDispatchMode):
    """Counts the reads of one tensor value into a Python number (``.item()``, ``float()``)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))


def _train(tmp_path, runtime_info: dict, name: str):
    torch.manual_seed(0)
    model = _Regression()
    generator = torch.Generator().manual_seed(1)
    data = [dict(inputs=torch.randn(4, generator=generator),
                 data_samples=torch.randn((), generator=generator)) for _ in range(SAMPLES)]
    probe = _Probe()
    runner = Runner(
        model=model, work_dir=str(tmp_path / name), experiment_name=name,
        train_dataloader=DataLoader(data, batch_size=BATCH, shuffle=False,
                                    collate_fn=lambda batch: dict(
                                        inputs=[d['inputs'] for d in batch],
                                        data_samples=[d['data_samples'] for d in batch])),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05), clip_grad=dict(max_norm=0.5)),
        train_cfg=dict(by_epoch=False, max_iters=MAX_ITERS),
        default_hooks=dict(runtime_info=runtime_info,
                           logger=dict(type='LoggerHook', interval=LOG_INTERVAL),
                           checkpoint=dict(type='CheckpointHook', interval=CKPT_INTERVAL,
                                           by_epoch=False)),
        custom_hooks=[probe], log_processor=dict(by_epoch=False, window_size=LOG_INTERVAL),
        default_scope='mmseg', randomness=dict(seed=0))
    reads, copies, tolist = _ScalarReads(), [], torch.Tensor.tolist

    def counting_tolist(tensor):
        copies.append(tensor.numel())
        return tolist(tensor)

    with reads, mock.patch.object(torch.Tensor, 'tolist', counting_tolist):
        runner.train()
    restored = runner.optim_wrapper.clip_func is torch.nn.utils.clip_grad_norm_
    histories = {key: [v.tolist() for v in runner.message_hub.get_scalar(key).data]
                 for key in KEYS}
    keys = list(runner.message_hub.log_scalars)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    logs = _logged_lines(tmp_path / name)
    return dict(histories=histories, keys=keys, weights=weights, probe=probe,
                reads=reads.count, copies=copies, restored=restored, logs=logs)


def _logged_lines(work_dir) -> list[dict]:
    """What the LoggerHook wrote, without the timings."""
    (path,) = work_dir.glob('*/vis_data/scalars.json')
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in line.items() if k not in ('time', 'data_time')} for line in lines]


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp('deferred_runtime_info')
    return (_train(tmp_path, dict(type='RuntimeInfoHook'), 'immediate'),
            _train(tmp_path, dict(type='DeferredRuntimeInfoHook'), 'deferred'),
            # Extra flush points that do not divide the logger's interval.
            _train(tmp_path, dict(type='DeferredRuntimeInfoHook', flush_interval=2), 'every2'))


@pytest.mark.parametrize('variant', [1, 2], ids=['deferred', 'flush_interval=2'])
def test_the_logs_and_checkpoints_are_those_of_mmengines_hook(runs, variant):
    immediate, deferred = runs[0], runs[variant]
    assert deferred['histories'] == immediate['histories']
    assert deferred['keys'] == immediate['keys']  # the log lines' order
    assert len(immediate['histories']['train/grad_norm'][0]) == MAX_ITERS
    assert deferred['logs'] == immediate['logs'] and len(immediate['logs']) == 2  # at 3, 6
    # The checkpoint at iteration 5 falls between two log points; it holds every value too.
    assert list(deferred['probe'].saved) == list(immediate['probe'].saved) == [CKPT_INTERVAL, 7]
    for it, saved in immediate['probe'].saved.items():
        for key in KEYS:
            assert deferred['probe'].saved[it][key].data[0].tolist() == \
                saved[key].data[0].tolist()
    for key, value in immediate['weights'].items():
        assert torch.equal(deferred['weights'][key], value)  # training itself is untouched
    assert deferred['restored']  # the optimiser wrapper clips and logs as before after train


def test_values_wait_on_the_device_until_a_log_point(runs):
    immediate, deferred, every2 = runs
    assert immediate['probe'].seen == [1, 2, 3, 4, 5, 6, 7]
    # Flushed at the first iteration (new keys), at the logger's iterations 3 and 6, at the
    # end of the dataloader's epoch (iteration 4, where the LoggerHook logs unless
    # ignore_last) and at the last iteration; the checkpoint at 5 is flushed after the probe
    # has looked.
    assert deferred['probe'].seen == [1, 1, 3, 4, 4, 6, 7]
    assert every2['probe'].seen == [1, 2, 3, 4, 4, 6, 7]  # and at 2, 4, 6
    # mmengine reads 3 losses and the gradient norm into Python numbers, one by one, at every
    # iteration (28 reads); the deferred hook copies them to the host in one batch per flush
    # (all float32): at 1, 3, 4, the checkpoint at 5, 6 and 7.
    assert immediate['reads'] - deferred['reads'] == MAX_ITERS * 4
    assert immediate['copies'] == []
    assert deferred['copies'] == [4, 8, 4, 4, 4, 4]


def test_flush_interval_must_be_positive():
    with pytest.raises(ValueError, match='at least 1'):
        DeferredRuntimeInfoHook(flush_interval=0)
