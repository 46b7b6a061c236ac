"""LiveMemoryTracker and EmulatedCUDAAutocast (madm/utils/meta_memory.py)."""
import json
import os.path as osp
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from madm.models.utils import AutocastGroupNorm
from madm.utils.meta_memory import ALLOCATION_BLOCK_BYTES, EmulatedCUDAAutocast, LiveMemoryTracker


def meta(*shape: int, dtype: torch.dtype = torch.float32, grad: bool = False) -> torch.Tensor:
    return torch.empty(*shape, device='meta', dtype=dtype, requires_grad=grad)


# --------------------------------------------------------------------------- tracker
def test_tracker_counts_storages_once_and_frees_them():
    with LiveMemoryTracker() as tracker:
        start = tracker.current
        a = meta(1024)  # 4 KiB
        view = a.view(32, 32)
        a.add_(1)  # in place: nothing new
        assert tracker.current - start == 4096
        b = view * 2
        assert tracker.current - start == 8192
        del a
        assert tracker.current - start == 8192  # the view keeps a's storage
        del view
        assert tracker.current - start == 4096
        del b
        assert tracker.current == start
        assert tracker.peak - tracker.resident == 8192


def test_tracker_rounds_to_allocator_blocks():
    with LiveMemoryTracker() as tracker:
        start = tracker.current
        x = meta(1)
        assert tracker.current - start == ALLOCATION_BLOCK_BYTES
        y = meta(129)  # 516 bytes
        assert tracker.current - start == 3 * ALLOCATION_BLOCK_BYTES
        del x, y


def test_tracker_counts_what_lives_before_it_and_stops_after_exit():
    weights = meta(256, 256)  # 256 KiB, made before the tracker
    with LiveMemoryTracker() as tracker:
        assert tracker.resident >= weights.numel() * 4
        before = tracker.current
        del weights
        assert before - tracker.current == 256 * 256 * 4
    after = tracker.current
    kept = meta(1024)
    del kept
    assert tracker.current == after  # detached: no more counting


def test_tracker_sees_what_autograd_keeps_for_backward():
    w = meta(512, 512, grad=True)
    x = meta(64, 512)
    with LiveMemoryTracker() as tracker:
        start = tracker.current
        h = torch.tanh(x @ w)  # tanh keeps its output, matmul keeps x and w (already live)
        loss = h.sum()
        del h
        assert tracker.current - start >= 64 * 512 * 4  # the saved tanh output
        loss.backward()
        assert w.grad is not None
        del loss
        # What is left is the gradient.
        assert tracker.current - start == 512 * 512 * 4


# --------------------------------------------------------------------------- autocast
@pytest.mark.parametrize('dtype', ['float16', 'bfloat16'])
def test_emulation_matches_pytorchs_cuda_autocast_test_lists(dtype):
    """PyTorch's own CUDA autocast test cases, built on meta, give the dtypes CUDA gives. In a
    subprocess: importing torch.testing._internal freezes torch.backends' flags globally."""
    script = osp.join(osp.dirname(__file__), 'autocast_lists_check.py')
    done = subprocess.run([sys.executable, script, dtype], capture_output=True, text=True,
                          check=True)
    result = json.loads(done.stdout.splitlines()[-1])
    assert result['wrong_dtype'] == []
    # Entries that cannot run on meta whatever the casts: meta has no kernel for the cuDNN
    # convolutions, and the list's 2-D operands do not fit its einsum's 4-subscript equation
    # (einsum is checked below).
    assert set(result['failed']) == {'cudnn_convolution', 'cudnn_convolution_transpose',
                                     'einsum'}, result['failed']
    assert result['checked'] == result['cases'] - 3 and result['checked'] > 90


def test_einsum_casts_to_the_autocast_dtype():
    a, b = meta(2, 3, 4, 5), meta(2, 6, 4, 5)
    with EmulatedCUDAAutocast(torch.bfloat16):
        assert torch.einsum('bkhd,bqhd->bqkh', a, b).dtype == torch.bfloat16


def test_banned_op_is_refused_as_on_cuda():
    x = meta(4, 4)
    with EmulatedCUDAAutocast(torch.bfloat16), pytest.raises(RuntimeError, match='unsafe'):
        F.binary_cross_entropy(x, x)


def test_interpolate_runs_in_float32_except_area():
    x = meta(1, 2, 8, 8, dtype=torch.bfloat16)
    with EmulatedCUDAAutocast(torch.bfloat16):
        assert F.interpolate(x, scale_factor=2, mode='bilinear').dtype == torch.float32
        assert F.interpolate(x, size=(16, 16)).dtype == torch.float32  # nearest
        assert F.interpolate(x, size=(4, 4), mode='area').dtype == torch.bfloat16
        assert F.silu(x).dtype == torch.bfloat16  # not listed: the input's dtype


def test_softmax_and_sum_compute_in_float32_unless_given_a_dtype():
    x = meta(4, 8, dtype=torch.bfloat16)
    with EmulatedCUDAAutocast(torch.bfloat16):
        assert x.softmax(1).dtype == torch.float32
        assert torch.sum(x).dtype == torch.float32
        assert x.sum(dtype=torch.bfloat16).dtype == torch.bfloat16
        assert x.softmax(1, torch.bfloat16).dtype == torch.bfloat16  # dtype given positionally


def test_a_trainable_weight_is_cast_once_per_context_and_still_gets_its_gradient():
    layer = nn.Linear(256, 256, device='meta')
    x = meta(8, 256)
    with LiveMemoryTracker() as tracker:
        with EmulatedCUDAAutocast(torch.bfloat16) as autocast:
            first = layer(x)
            after_first = tracker.current
            second = layer(x)
            # the second call casts its input again and makes its output (each 8x256 bf16),
            # but not a second copy of the weight (256x256 bf16)
            assert tracker.current - after_first == 2 * 8 * 256 * 2
            assert len(autocast._weight_casts) == 2  # weight and bias
        assert first.dtype == second.dtype == torch.bfloat16
        assert not autocast._weight_casts  # emptied on exit, like autocast's cache
        (first.float().sum() + second.float().sum()).backward()
    assert layer.weight.grad is not None and layer.weight.grad.dtype == torch.float32


def test_without_the_cache_each_call_casts_anew():
    layer = nn.Linear(64, 64, device='meta')
    with EmulatedCUDAAutocast(torch.bfloat16, cache_weight_casts=False) as autocast:
        layer(meta(2, 64))
        layer(meta(2, 64))
    assert not autocast._weight_casts


def test_group_norm_runs_in_float32_but_autocast_group_norm_keeps_the_dtype():
    x = meta(2, 32, 8, 8, dtype=torch.bfloat16)
    plain = nn.GroupNorm(8, 32, device='meta')
    kept = AutocastGroupNorm(8, 32, device='meta')
    model = nn.ModuleList([plain, kept])
    with EmulatedCUDAAutocast(torch.bfloat16, modules=model):
        assert plain(x).dtype == torch.float32
        assert kept(x).dtype == torch.bfloat16
        assert F.group_norm(x, 8).dtype == torch.float32  # hooks are per layer
    with EmulatedCUDAAutocast(torch.bfloat16):  # layers not given: CUDA's rule for all
        assert kept(x).dtype == torch.float32


@pytest.mark.parametrize('autocast_dtype,dtype', [(torch.bfloat16, torch.bfloat16),
                                                  (None, torch.float32)])
def test_fused_attention_keeps_no_attention_matrix(autocast_dtype, dtype):
    """Flash under autocast, memory-efficient in a float32 step (None: no casts)."""
    # SD-1.4's first self-attention at 512x512: 4096 tokens, 8 heads of 40 channels.
    def peak_of_attention(fused: bool) -> int:
        q, k, v = (meta(2, 8, 4096, 40, dtype=dtype, grad=True) for _ in range(3))
        with LiveMemoryTracker() as tracker:
            with EmulatedCUDAAutocast(autocast_dtype, fused_attention=fused):
                out = F.scaled_dot_product_attention(q, k, v)
            assert out.shape == q.shape and out.dtype == dtype
            out.sum().backward()
            assert q.grad is not None and q.grad.shape == q.shape
        return tracker.peak - tracker.resident

    attention_matrix = 2 * 8 * 4096 * 4096 * dtype.itemsize
    assert peak_of_attention(fused=True) < attention_matrix / 8
    assert peak_of_attention(fused=False) > attention_matrix


def test_without_an_autocast_dtype_nothing_is_cast():
    x = meta(2, 8)
    with EmulatedCUDAAutocast(None):
        assert F.linear(x, meta(4, 8)).dtype == torch.float32
        assert F.group_norm(x.to(torch.bfloat16), 2).dtype == torch.bfloat16


def test_only_half_types_are_accepted():
    with pytest.raises(ValueError, match='bfloat16, float16 or None'):
        EmulatedCUDAAutocast(torch.float32)


def test_an_interrupted_autocast_group_norm_does_not_leave_the_norm_rule_on():
    kept = AutocastGroupNorm(8, 32, device='meta')
    with EmulatedCUDAAutocast(torch.bfloat16, modules=kept):
        with pytest.raises(RuntimeError):
            kept(meta(2, 16, 4, 4, dtype=torch.bfloat16))  # wrong channel count
        assert F.group_norm(meta(2, 32, 4, 4, dtype=torch.bfloat16), 8).dtype == torch.float32


def test_backward_recomputes_checkpointed_segments_under_the_same_casts():
    layer, norm = nn.Linear(16, 16, device='meta'), nn.GroupNorm(4, 16, device='meta')
    x = meta(4, 16, grad=True)
    with EmulatedCUDAAutocast(torch.bfloat16):
        y = checkpoint(lambda t: norm(layer(t)), x, use_reentrant=False)
    assert y.dtype == torch.float32
    # Plain backward would recompute without the casts, and checkpoint would refuse the
    # recomputed bf16-vs-fp32 metadata.
    EmulatedCUDAAutocast(torch.bfloat16, cache_weight_casts=False).backward(y.sum())
    assert layer.weight.grad.dtype == torch.float32 and x.grad is not None


# --------------------------------------------------------------------------- on the CPU
def test_on_the_cpu_it_casts_as_cuda_autocast_where_cpu_autocast_does_not():
    """The fp32 check without a GPU: CUDA's rounding points on real CPU values."""
    torch.manual_seed(0)
    x, w = torch.randn(2, 8, 6, 6), torch.randn(8, 8, 3, 3)
    norm, autocast_norm = nn.GroupNorm(2, 8), AutocastGroupNorm(2, 8)
    with torch.autocast('cpu', dtype=torch.bfloat16):  # CPU autocast's own rule
        assert norm(F.conv2d(x, w)).dtype == torch.bfloat16
    with EmulatedCUDAAutocast(torch.bfloat16, device_type='cpu',
                              modules=nn.ModuleList([norm, autocast_norm])):
        y = F.conv2d(x, w)
        assert y.dtype == torch.bfloat16
        assert torch.equal(y, F.conv2d(x.bfloat16(), w.bfloat16()))  # the values too
        assert norm(y).dtype == torch.float32  # CUDA's rule: norms in float32
        assert autocast_norm(y).dtype == torch.bfloat16  # group_norm_precision='autocast'
        assert F.silu(y).dtype == torch.bfloat16
        assert (meta(2, 8) @ meta(8, 2)).dtype == torch.float32  # meta ones are left alone
    assert F.conv2d(x, w).dtype == torch.float32  # and nothing after the context


def test_device_type_is_meta_or_cpu():
    with pytest.raises(ValueError, match="device_type must be 'meta' or 'cpu'"):
        EmulatedCUDAAutocast(torch.bfloat16, device_type='cuda')
