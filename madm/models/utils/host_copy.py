"""Copy small host tensors to the device without making the host wait."""
import torch
from torch import Tensor


def to_device_async(tensor: Tensor, device: torch.device | str,
                    dtype: torch.dtype | None = None) -> Tensor:
    """Copy a (small) host tensor to ``device`` without a host synchronisation.

    A plain ``.to('cuda')`` from pageable memory waits until the GPU has done its queued
    work. On CUDA the tensor is staged in pinned memory and copied with
    ``non_blocking=True``: the copy is queued behind that work instead, and PyTorch's pinned
    allocator keeps the staging buffer until the copy has run. A tensor that is already
    pinned is copied from in place, so the caller must not change it until the copy has
    run (the callers pass fresh tensors). To ``meta`` it is a
    non-blocking ``.to`` (what the host-sync audit checks), elsewhere a plain ``.to``.

    Args:
        tensor (Tensor): A host tensor (random draws, constants).
        device (torch.device | str): Where it is needed.
        dtype (torch.dtype | None): Cast on the host first, if given. Defaults to None.

    Returns:
        Tensor: ``tensor`` on ``device`` (``tensor`` itself if it is already there).
    """
    device = torch.device(device)
    if dtype is not None:
        tensor = tensor.to(dtype)
    if tensor.device == device:
        return tensor
    if device.type == 'cuda' and tensor.device.type == 'cpu':
        return tensor.pin_memory().to(device, non_blocking=True)
    if device.type == 'meta':  # the stand-in for CUDA of madm.utils.host_sync_audit
        return tensor.to(device, non_blocking=True)
    return tensor.to(device)
