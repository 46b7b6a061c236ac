"""to_device_async: small host tensors reach the device without a host wait."""
import torch

from madm.models.utils import to_device_async
from madm.utils.host_sync_audit import HostSyncAudit


def test_same_device_returns_the_tensor_and_casts_first():
    t = torch.arange(3)
    assert to_device_async(t, 'cpu') is t
    out = to_device_async(t, 'cpu', torch.float16)
    assert out.dtype == torch.float16 and out.tolist() == [0.0, 1.0, 2.0]


def test_copy_to_meta_is_non_blocking():
    with HostSyncAudit() as audit:
        out = to_device_async(torch.rand(2, 3), 'meta', torch.bfloat16)
    assert out.device.type == 'meta' and out.dtype == torch.bfloat16 and audit.syncs == []


def test_cuda_copy_goes_through_pinned_memory_without_blocking(monkeypatch):
    """No GPU here: the two calls that matter are spied on."""
    calls = []

    def pin_memory(self):
        calls.append('pin')
        return self

    def to(self, *args, **kwargs):
        calls.append(('to', str(args[0]) if args else None, kwargs.get('non_blocking')))
        return self

    monkeypatch.setattr(torch.Tensor, 'pin_memory', pin_memory)
    monkeypatch.setattr(torch.Tensor, 'to', to)
    to_device_async(torch.rand(2), 'cuda')
    assert calls == ['pin', ('to', 'cuda', True)]
