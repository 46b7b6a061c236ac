from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapper, OptimWrapperDict

from madm.utils.deferred_scalars import DeferredScalars, defer_grad_norm_log
from madm.utils.host_sync_audit import HostSyncAudit


def _history(hub: MessageHub, key: str) -> tuple[list, list]:
    values, counts = hub.get_scalar(key).data
    return values.tolist(), counts.tolist()


VALUES = [('train/loss', torch.tensor(0.1234567, dtype=torch.float32)),
          ('train/acc', torch.tensor([97.5], dtype=torch.float64)),
          ('train/loss', torch.tensor(2.5, dtype=torch.bfloat16)),
          ('train/step', torch.tensor(7)),
          ('train/lr', 0.001),
          ('train/loss', np.float32(0.75)),
          ('train/loss', torch.tensor(1 / 3))]


def test_flush_logs_what_immediate_logging_would_have_logged_in_order():
    immediate = MessageHub.get_instance('deferred_scalars_immediate')
    deferred = MessageHub.get_instance('deferred_scalars_deferred')
    scalars = DeferredScalars()
    for key, value in VALUES:
        immediate.update_scalar(key, value)
        scalars.add(key, value)
    assert len(scalars) == len(VALUES)
    assert 'train/loss' not in deferred.log_scalars  # nothing logged before the flush

    scalars.flush(deferred)
    assert len(scalars) == 0
    for key in ('train/loss', 'train/acc', 'train/step', 'train/lr'):
        assert _history(deferred, key) == _history(immediate, key)
    # The same Python numbers, exactly: float32 through its .item(), ints stay ints.
    assert deferred.get_scalar('train/loss').data[0][0] == torch.tensor(0.1234567).item()
    assert deferred.get_scalar('train/step').current() == 7
    scalars.flush(deferred)  # nothing left: nothing logged twice
    assert _history(deferred, 'train/loss') == _history(immediate, 'train/loss')


def test_flush_copies_each_device_and_dtype_once():
    scalars = DeferredScalars()
    for key, value in VALUES:
        scalars.add(key, value)
    copied, tolist = [], torch.Tensor.tolist

    def counting_tolist(tensor):
        copied.append((tensor.dtype, tensor.numel()))
        return tolist(tensor)

    with mock.patch.object(torch.Tensor, 'tolist', counting_tolist):
        scalars.flush(MessageHub.get_instance('deferred_scalars_groups'))
    # The Python and numpy numbers need no copy.
    assert sorted(copied, key=str) == sorted([(torch.float32, 2), (torch.float64, 1),
                                              (torch.bfloat16, 1), (torch.int64, 1)], key=str)


def test_keeping_a_device_value_makes_the_host_wait_for_nothing():
    loss = torch.ones(3, device='meta').mean()
    scalars = DeferredScalars()
    with HostSyncAudit() as audit:
        scalars.add('train/loss', loss)
        scalars.add('train/loss', loss * 2)
    assert audit.summary()['total'] == 0
    with HostSyncAudit() as audit:  # what mmengine does instead
        MessageHub.get_instance('deferred_scalars_meta').update_scalar('train/loss', loss)
    assert audit.summary()['total'] == 1


def test_what_mmengine_would_refuse_is_refused_when_added():
    with pytest.raises(ValueError, match="'train/loss'.*shape \\(2,\\)"):
        DeferredScalars().add('train/loss', torch.ones(2))
    with pytest.raises(ValueError, match="'train/acc'.*shape \\(2, 1\\)"):
        DeferredScalars().add('train/acc', np.ones((2, 1)))
    with pytest.raises(TypeError, match="'train/note'.*str"):
        DeferredScalars().add('train/note', 'high')


def _model_and_grads(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Linear(4, 3)
    model(torch.randn(5, 4) * 10).pow(2).sum().backward()
    return model


def _wrapper(model: nn.Module, hub_name: str, **clip_grad) -> OptimWrapper:
    MessageHub.get_instance(hub_name)  # the wrapper logs into the current message hub
    return OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1),
                        clip_grad=clip_grad or None)


def test_deferred_grad_norm_clips_as_mmengine_and_keeps_the_norm_for_later():
    plain_model, deferred_model = _model_and_grads(), _model_and_grads()
    plain = _wrapper(plain_model, 'grad_norm_plain', max_norm=1.0)
    plain.step()
    logged = MessageHub.get_current_instance().get_scalar('train/grad_norm').current()

    hub = MessageHub.get_instance('grad_norm_deferred')
    deferred = _wrapper(deferred_model, 'grad_norm_deferred', max_norm=1.0)
    scalars = DeferredScalars()
    restore = defer_grad_norm_log(deferred, scalars)
    deferred.step()
    assert 'train/grad_norm' not in hub.log_scalars and len(scalars) == 1
    for p, q in zip(plain_model.parameters(), deferred_model.parameters()):
        assert torch.equal(p, q)  # the same clipped step
    scalars.flush(hub)
    assert hub.get_scalar('train/grad_norm').current() == logged > 1.0

    restore()
    assert deferred.clip_func is torch.nn.utils.clip_grad_norm_
    deferred.step()
    assert len(scalars) == 0 and len(hub.get_scalar('train/grad_norm').data[0]) == 2


def test_wrappers_without_norm_clipping_are_left_alone():
    model = _model_and_grads()
    no_clip = _wrapper(model, 'grad_norm_none')
    by_value = _wrapper(model, 'grad_norm_value', type='value', clip_value=0.1)
    by_norm = _wrapper(model, 'grad_norm_dict', max_norm=1.0)
    wrappers = OptimWrapperDict(a=no_clip, b=by_value, c=by_norm)
    restore = defer_grad_norm_log(wrappers, DeferredScalars())
    assert not hasattr(no_clip, 'clip_func')
    assert by_value.clip_func is torch.nn.utils.clip_grad_value_
    assert by_norm.clip_func is not torch.nn.utils.clip_grad_norm_
    restore()
    assert by_norm.clip_func is torch.nn.utils.clip_grad_norm_


@pytest.mark.parametrize('deferred', [False, True])
def test_the_deferred_grad_norm_makes_the_host_wait_for_nothing(deferred):
    model = nn.Linear(4, 3, device='meta')
    for param in model.parameters():
        param.grad = torch.ones_like(param)
    wrapper = _wrapper(model, f'grad_norm_meta_{deferred}', max_norm=1.0)
    if deferred:
        defer_grad_norm_log(wrapper, DeferredScalars())
    with HostSyncAudit() as audit:
        wrapper.step()
    where = list(audit.summary()['where'])
    if deferred:
        assert where == []
    else:  # mmengine's float(norm)
        assert len(where) == 1 and where[0].startswith('mmengine/optim/optimizer/')
