"""pixel_accuracy: mmseg's accuracy without host synchronisation."""
import pytest
import torch
from mmseg.models.losses import accuracy

from madm.models.losses import pixel_accuracy
from madm.utils.host_sync_audit import HostSyncAudit


@pytest.mark.parametrize('ignore_index', [255, None])
def test_equals_mmseg_accuracy(ignore_index):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 7, 9, generator=gen)
    label = torch.randint(0, 5, (2, 7, 9), generator=gen)
    label[:, :2] = 255 if ignore_index is not None else label[:, :2]
    ours = pixel_accuracy(logits, label, ignore_index)
    assert ours.shape == (1, )
    torch.testing.assert_close(ours, accuracy(logits, label, ignore_index=ignore_index))
    # the hand count: correct over labelled pixels
    valid = label != 255 if ignore_index is not None else torch.ones_like(label, dtype=torch.bool)
    expected = 100 * ((logits.argmax(1) == label) & valid).sum() / valid.sum()
    torch.testing.assert_close(ours, expected.float().view(1))


def test_all_ignored_gives_mmsegs_finite_value():
    logits, label = torch.randn(1, 3, 2, 2), torch.full((1, 2, 2), 255)
    acc = pixel_accuracy(logits, label)
    assert torch.isfinite(acc).all() and float(acc) == pytest.approx(100.0)  # (0 + ε) / (0 + ε)
    torch.testing.assert_close(acc, accuracy(logits, label, ignore_index=255))


def test_never_waits_for_the_device_where_mmseg_waits_twice():
    logits = torch.empty(2, 5, 8, 8, device='meta')
    label = torch.empty(2, 8, 8, dtype=torch.long, device='meta')
    with HostSyncAudit() as ours:
        pixel_accuracy(logits, label, 255)
    with HostSyncAudit() as mmseg:
        accuracy(logits, label, ignore_index=255)
    assert ours.syncs == [] and len(mmseg.syncs) == 2
