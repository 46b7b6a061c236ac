"""HostSyncAudit: the calls that would make the host wait for a CUDA device, found on meta."""
import numpy as np
import pytest
import torch

from madm.utils.host_sync_audit import HostSyncAudit, MetaPlaceholders

HERE = 'tests/test_utils/test_host_sync_audit.py'


def _meta(*shape, dtype=torch.float32):
    return torch.empty(*shape, dtype=dtype, device='meta')


def _recorded_then_raises(call):
    """A value-dependent call without a placeholder is recorded, then meta raises."""
    with pytest.raises(RuntimeError, match='meta'):
        call()


@pytest.mark.parametrize('name, call, op', [
    ('item', lambda x: x.sum().item(), 'aten._local_scalar_dense'),
    ('float', lambda x: float(x.sum()), 'aten._local_scalar_dense'),
    ('bool', lambda x: bool(x.sum() > 0), 'aten._local_scalar_dense'),
    ('equal', lambda x: torch.equal(x, x), 'aten.equal'),
    ('unique', lambda x: torch.unique(x), 'aten._unique2'),
    ('nonzero', lambda x: x.nonzero(), 'aten.nonzero'),
    ('mask', lambda x: x[x > 0], 'aten.index'),
    ('masked_select', lambda x: x.masked_select(x > 0), 'aten.masked_select'),
    ('to', lambda x: torch.ones(3).to(x.device), 'aten._to_copy'),
    ('copy_', lambda x: x[0].copy_(torch.ones(4)), 'aten.copy_'),
    ('cpu', lambda x: x.cpu(), 'aten._to_copy'),
    ('copy_ to host', lambda x: torch.ones(4).copy_(x[0, 0]), 'aten.copy_'),
    ('tensor', lambda x: torch.tensor([1.0], device=x.device), 'torch.tensor'),
    ('as_tensor', lambda x: torch.as_tensor([1.0], device=x.device), 'torch.as_tensor'),
    ('new_tensor', lambda x: x.new_tensor([1.0]), 'torch.new_tensor'),
    ('list index', lambda x: x[[1, 0]], 'Tensor.__getitem__'),
    ('numpy index', lambda x: x[np.array([1, 0])], 'aten._to_copy'),
    ('list setitem', lambda x: x.__setitem__([1, 0], 0.0), 'Tensor.__setitem__'),
    ('host index tensor', lambda x: x[torch.tensor([1, 0])], 'aten.index'),
    ('new_tensor by keyword', lambda x: x.new_tensor(data=[1.0]), 'torch.new_tensor'),
    ('as_tensor of a host tensor', lambda x: torch.as_tensor(torch.ones(2), device=x.device),
     'aten._to_copy'),
    ('repeat_interleave', lambda x: _recorded_then_raises(lambda: torch.repeat_interleave(
        torch.ones(2, dtype=torch.long, device=x.device))), 'aten.repeat_interleave'),
    ('linalg', lambda x: torch.linalg.inv(x[:, :2, :2].reshape(-1, 2, 2)),
     'aten._linalg_check_errors'),
])
def test_each_kind_of_host_wait_is_recorded_where_it_is_called(name, call, op):
    x = _meta(2, 4, 4)
    with HostSyncAudit() as audit:
        call(x)
    assert [s.op for s in audit.syncs] == [op], name
    assert audit.syncs[0].where.startswith(HERE + ':')
    assert audit.summary()['total'] == 1


def test_device_work_host_work_and_non_blocking_copies_are_not_recorded():
    x = _meta(2, 3, 4)
    with HostSyncAudit() as audit:
        y = (x * 2).flip(1).softmax(1).argmax(1)  # device work
        x * torch.tensor(2.0)  # a 0-dim host tensor goes as a kernel argument
        torch.randperm(4).tolist()  # host work
        float(torch.rand(3).sum())
        torch.rand(3).to('meta', non_blocking=True)
        x[0, 1:2]  # basic indexing
        torch.full((2, ), 3, device='meta')  # made on the device
        counts = torch.ones(2, dtype=torch.long, device='meta')
        x.flatten().repeat_interleave(counts.repeat(12)[:24], output_size=48)  # size given
    assert audit.syncs == [] and y.device.type == 'meta'


def test_summary_groups_by_line_and_the_patches_are_undone():
    x = _meta(4)
    assert 'new_tensor' not in vars(torch.Tensor) and '__getitem__' not in vars(torch.Tensor)
    original = torch.tensor
    with HostSyncAudit() as audit:
        for _ in range(3):
            x.sum().item()
        torch.unique(x)
    assert torch.tensor is original
    assert 'new_tensor' not in vars(torch.Tensor) and '__getitem__' not in vars(torch.Tensor)
    summary = audit.summary()
    assert summary['total'] == 4
    assert list(summary['where'].values()) == [3, 1]  # most frequent first
    assert all(where.startswith(HERE) for where in summary['where'])
    assert set(summary['why']) == set(summary['where'])


def test_placeholders_let_a_meta_run_go_on():
    x = _meta(5)
    with MetaPlaceholders():
        assert x.sum().item() == 0.0 and bool(x.sum() > 0) is False
        assert torch.unique(x).shape == (1, )
        assert x[x > 0].shape == (5, )  # a mask selects everything
        assert x.cpu().tolist() == [0.0] * 5
    real = torch.tensor([3.0, -1.0])
    with MetaPlaceholders():  # real tensors pass untouched
        assert real.sum().item() == 2.0 and real[real > 0].tolist() == [3.0]
