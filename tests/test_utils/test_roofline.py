"""RooflineCounter and its traffic and launch rules (madm/utils/roofline.py)."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from madm.utils.meta_memory import EmulatedCUDAAutocast
from madm.utils.roofline import (DEVICE_SPECS, DeviceSpec, RooflineCounter, count_parts,
                                 distinct_bytes, multi_tensor_launches, op_category, peak_flops)

#: Round numbers, so that expected times are easy to write: 1 TFLOP/s half, 1 TB/s.
SPEC = DeviceSpec('test', half_tflops=1.0, tf32_tflops=0.5, fp32_tflops=0.25,
                  bandwidth_tbs=1.0)


def meta(*shape: int, dtype: torch.dtype = torch.float32, grad: bool = False) -> torch.Tensor:
    return torch.empty(*shape, device='meta', dtype=dtype, requires_grad=grad)


def only_op(counter: RooflineCounter, name: str) -> dict:
    summary = counter.summary()
    (entry,) = [t for t in summary['top_ops'] if t['op'] == name]
    return entry


def test_a_matmul_counts_its_flops_operands_and_result_once():
    a, b = meta(64, 32, dtype=torch.bfloat16), meta(32, 16, dtype=torch.bfloat16)
    with RooflineCounter(SPEC) as counter:
        out = a @ b
    assert out.shape == (64, 16)
    mm = only_op(counter, 'mm')
    assert mm['flops'] == 2 * 64 * 32 * 16
    assert mm['bytes'] == (64 * 32 + 32 * 16 + 64 * 16) * 2
    assert mm['kernels'] == mm['ops'] == 1
    # compute-bound on this spec: 65,536 FLOPs at 1e12/s vs 6,144 bytes at 1e12/s
    assert mm['seconds'] == pytest.approx(2 * 64 * 32 * 16 / 1e12)
    assert set(counter.summary()['by_category']) == {'matmul'}


def test_views_and_allocations_move_nothing():
    x = meta(8, 8)
    with RooflineCounter(SPEC) as counter:
        x.view(64)
        x.transpose(0, 1)
        x[2:4]
        torch.empty(100, device='meta')
        x.detach()
    assert counter.summary()['kernels'] == 0 and counter.summary()['bytes'] == 0


def test_in_place_reads_and_writes_its_target_and_copy_only_writes_it():
    x, y = meta(256), meta(256)
    with RooflineCounter(SPEC) as counter:
        x.add_(y)
        x.copy_(y)
        x.zero_()
    assert only_op(counter, 'add_')['bytes'] == 3 * 1024  # read x and y, write x
    assert only_op(counter, 'copy_')['bytes'] == 2 * 1024  # read y, write x
    assert only_op(counter, 'zero_')['bytes'] == 1024


def test_a_tensor_passed_twice_is_read_once_and_a_gather_reads_what_it_selects():
    x, table, rows = meta(1024), meta(50000, 64), torch.empty(77, dtype=torch.long,
                                                               device='meta')
    with RooflineCounter(SPEC) as counter:
        x.mul_(x)
        F.embedding(rows, table)
    assert only_op(counter, 'mul_')['bytes'] == 2 * 4096
    assert only_op(counter, 'embedding')['bytes'] == 77 * 8 + 2 * 77 * 64 * 4


def test_host_tensors_launch_nothing():
    step = torch.zeros(())  # AdamW keeps its step count on the host
    with RooflineCounter(SPEC) as counter:
        torch._foreach_add_([step], 1)
        step.add_(1)
    assert counter.summary()['kernels'] == 0


def test_a_broadcast_argument_counts_its_distinct_elements():
    x, bias = meta(16, 1024), meta(1024)
    assert distinct_bytes(bias.expand(16, 1024)) == 4096
    with RooflineCounter(SPEC) as counter:
        x + bias.expand(16, 1024)
    assert only_op(counter, 'add')['bytes'] == 16 * 1024 * 4 * 2 + 4096


def test_memory_bound_time_and_the_datasheet_peaks():
    x = meta(1 << 20)
    with RooflineCounter(SPEC) as counter:
        torch.nn.functional.silu(x)
    assert only_op(counter, 'silu')['seconds'] == pytest.approx(8 * (1 << 20) / 1e12)
    assert peak_flops(SPEC, torch.bfloat16, 'matmul') == 1e12
    h100 = DEVICE_SPECS['h100']
    assert peak_flops(h100, torch.float32, 'convolution') == (
        h100.tf32_tflops if torch.backends.cudnn.allow_tf32 else h100.fp32_tflops) * 1e12
    assert DEVICE_SPECS['h200'].bandwidth_tbs > h100.bandwidth_tbs


@pytest.mark.parametrize('name, category', [
    ('mm', 'matmul'), ('baddbmm', 'matmul'), ('convolution_backward', 'convolution'),
    ('_scaled_dot_product_flash_attention_backward', 'attention'),
    ('native_group_norm', 'normalisation'), ('native_layer_norm_backward', 'normalisation'),
    ('linalg_vector_norm', 'other elementwise and reductions'),
    ('_foreach_norm', 'other elementwise and reductions'),
    ('upsample_bilinear2d_backward', 'resize'), ('_to_copy', 'casts and copies'),
    ('silu', 'other elementwise and reductions')])
def test_categories(name, category):
    assert op_category(name) == category


def test_multi_tensor_launches_follow_atens_limits():
    assert multi_tensor_launches([], depth=1) == 0
    assert multi_tensor_launches([10] * 200, depth=4) == 6  # 36 tensors per launch
    assert multi_tensor_launches([10] * 200, depth=1) == 2  # 110
    assert multi_tensor_launches([65536 * 321], depth=2) == 2  # 320 chunks per launch


def test_foreach_calls_count_their_launches_and_the_optimizer_phase_its_category():
    params = [meta(10) for _ in range(200)]
    with RooflineCounter(SPEC) as counter:
        with counter.phase('optimizer'):
            torch._foreach_mul_(params, 0.5)
        torch._foreach_add(params, 1.0)
    summary = counter.summary()
    assert summary['by_phase']['optimizer']['kernels'] == multi_tensor_launches([10] * 200, 1)
    assert summary['by_phase']['forward']['kernels'] == multi_tensor_launches([10] * 200, 2)
    assert summary['by_category']['optimizer']['bytes'] == 200 * 40 * 2
    with pytest.raises(ValueError, match='phase must be one of'):
        with counter.phase('update'):
            pass


def test_fused_adamw_is_one_pass_per_group_and_only_inside_the_counter():
    groups = [[meta(1000, grad=True), meta(24, grad=True)], [meta(500, grad=True)]]
    for group in groups:
        for p in group:
            p.grad = torch.empty_like(p)
    frozen = meta(7, grad=True)  # no gradient: AdamW skips it
    counter = RooflineCounter(SPEC)
    counter.add_fused_adamw(groups)  # outside the mode: the warm-up step, not counted
    assert counter.summary()['kernels'] == 0
    with counter:
        counter.add_fused_adamw(groups + [[frozen]])
    fused = only_op(counter, '_fused_adamw_')
    assert fused['bytes'] == 7 * 4 * (1000 + 24 + 500)  # read p, g, m, v; write p, m, v
    assert fused['kernels'] == 2
    assert set(counter.summary()['by_category']) == {'optimizer'}


def test_clipping_runs_in_its_cuda_foreach_form_on_meta():
    from madm.utils.benchmark import _foreach_clipping_on_meta
    clip_grad = torch.nn.utils.clip_grad
    originals = (clip_grad._device_has_foreach_support, clip_grad._has_foreach_support)
    params = [meta(10, grad=True) for _ in range(5)]
    for p in params:
        p.grad = torch.empty_like(p)
    with RooflineCounter(SPEC) as counter, _foreach_clipping_on_meta():
        torch.nn.utils.clip_grad_norm_(params, 1.0)
    # one foreach norm over the 5 gradients, one norm of the 5 norms; not a norm per gradient
    assert counter.by_op['_foreach_norm'].ops == 1
    assert counter.by_op['linalg_vector_norm'].ops == 1
    assert (clip_grad._device_has_foreach_support, clip_grad._has_foreach_support) == originals


def test_not_counted_runs_without_counting():
    x = meta(64)
    with RooflineCounter(SPEC) as counter:
        with counter.not_counted():
            y = x * 2
    assert y.shape == (64,) and counter.summary()['kernels'] == 0


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 16, 3, padding=1)
        self.norm = nn.GroupNorm(4, 16)
        self.proj = nn.Linear(16, 48)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.silu(self.norm(self.conv(x)))
        tokens = x.flatten(2).transpose(1, 2)  # (B, 64, 16)
        q, k, v = self.proj(tokens).view(2, 64, 3, 2, 8).permute(2, 0, 3, 1, 4)
        return F.scaled_dot_product_attention(q, k, v).sum()


def test_flops_are_those_of_torchs_flop_counter_under_emulated_autocast():
    net = SmallNet().to('meta')
    x = meta(2, 8, 8, 8)

    def step() -> None:
        with EmulatedCUDAAutocast(torch.bfloat16):
            loss = net(x)
        loss.backward()

    with FlopCounterMode(display=False) as reference:
        step()
    with RooflineCounter(SPEC) as counter:
        step()
    summary = counter.summary(model_flops=reference.get_total_flops())
    assert summary['executed_flops'] == reference.get_total_flops() > 0
    assert {'convolution', 'matmul', 'attention', 'normalisation'} <= set(
        summary['by_category'])
    assert summary['by_category']['attention']['flops'] > 0  # the flash kernel's formula
    assert summary['eager_bound_s'] > summary['compute_bound_s'] > 0
    peak = SPEC.half_tflops * 1e12
    assert summary['mfu_ceiling_eager'] == pytest.approx(
        summary['model_flops'] / summary['eager_bound_s'] / peak)
    assert summary['mfu_ceiling_fused'] > summary['mfu_ceiling_eager']
    # casts to bf16 are counted as such
    assert summary['by_category']['casts and copies']['kernels'] > 0


def test_counted_phases_restore_the_wrapper_as_it_was():
    from mmengine.optim import OptimWrapper

    from madm.utils.benchmark import _counted_phases
    net = nn.Linear(4, 4)
    wrapper = OptimWrapper(torch.optim.AdamW(net.parameters()))
    own_zero_grad = wrapper.zero_grad  # an instance attribute set before, kept after
    wrapper.zero_grad = own_zero_grad
    counter = RooflineCounter(SPEC)
    with pytest.raises(RuntimeError, match='inside'):
        with _counted_phases(counter, wrapper, fused=True):
            assert 'step' in vars(wrapper) and 'step' in vars(wrapper.optimizer)
            raise RuntimeError('inside')
    assert 'backward' not in vars(wrapper) and 'step' not in vars(wrapper)
    assert 'step' not in vars(wrapper.optimizer)
    assert vars(wrapper)['zero_grad'] is own_zero_grad


class TwoParts(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(8, 8), nn.ReLU())
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x) * 2)


def test_parts_attribute_each_forward_and_add_up_to_the_phases():
    model = TwoParts().to('meta')
    x = meta(16, 8)
    parts = {model: 'model', model.encoder: 'encoder', model.head: 'head'}
    with RooflineCounter(SPEC) as counter, count_parts(counter, parts):
        loss = model(x).sum()
        with counter.phase('backward'):
            loss.backward()
    summary = counter.summary()
    by_part = summary['by_part']
    assert set(by_part) == {'forward: encoder', 'forward: head', 'forward: model',
                            'forward: other', 'backward: other'}
    # the inner module wins: the linear layers are not the outer model's
    assert by_part['forward: model']['flops'] == 0 and by_part['forward: model']['ops'] == 1
    assert by_part['forward: encoder']['flops'] == by_part['forward: head']['flops'] * 2
    assert by_part['forward: encoder']['compute_seconds'] > 0
    for phase, totals in summary['by_phase'].items():
        for key in ('ops', 'kernels', 'flops', 'bytes'):
            assert totals[key] == sum(t[key] for name, t in by_part.items()
                                      if name.startswith(phase)), (phase, key)
    assert summary['compute_bound_s'] == pytest.approx(
        sum(t['compute_seconds'] for t in by_part.values()))
    # the hooks are gone afterwards
    with RooflineCounter(SPEC) as later:
        model(x)
    assert set(later.summary()['by_part']) == {'forward: other'}


def raise_error(*args) -> None:
    raise RuntimeError('a hook failed')


def test_a_part_ends_when_its_forward_raises():
    model = TwoParts().to('meta')
    model.head.register_forward_hook(raise_error)
    with RooflineCounter(SPEC) as counter, count_parts(counter, {model.head: 'head'}):
        with pytest.raises(RuntimeError):
            model(meta(2, 8))
        meta(4).add_(1)
    by_part = counter.summary()['by_part']
    assert by_part['forward: head']['ops'] == 1  # the linear layer; add_ is not the head's
    # the encoder's linear and ReLU, the product by 2 and add_
    assert by_part['forward: other']['ops'] == 4


def test_a_part_not_started_is_not_ended():
    """A pre-hook registered before the counter's raises: the part never started, and the
    always-run end hook must not end the enclosing part instead."""
    model = TwoParts().to('meta')
    model.head.register_forward_pre_hook(raise_error)
    parts = {model: 'model', model.head: 'head'}
    with RooflineCounter(SPEC) as counter, count_parts(counter, parts):
        with pytest.raises(RuntimeError):
            model(meta(2, 8))
        meta(4).add_(1)
    by_part = counter.summary()['by_part']
    assert 'forward: head' not in by_part
    assert by_part['forward: model']['ops'] == 3  # linear, ReLU, the product by 2
    assert by_part['forward: other']['ops'] == 1  # add_, after the model's part ended

