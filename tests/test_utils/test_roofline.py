"""RooflineCounter and its traffic and launch rules (madm/utils/roofline.py)."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
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
    # backward: the seed gradient is no part's; the sum's backward is 'other' too
    assert set(by_part) == {'forward: encoder', 'forward: head', 'forward: model',
                            'forward: other', 'backward: encoder', 'backward: head',
                            'backward: model', 'backward: other'}
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


N, A, B, C = 32, 8, 16, 4  # batch, then the widths of the two layers' inputs and outputs


def backward_by_part(model: nn.Module, parts: dict, *inputs: torch.Tensor,
                     zero_grad: bool = True) -> dict:
    """The summary of a forward and its backward (from a given gradient: no seed operator)
    of ``model`` under ``count_parts(parts)``, checking that the parts add up to the phases."""
    if zero_grad:  # the gradients are the backward's, not added to earlier ones
        model.zero_grad(set_to_none=True)
    counter = RooflineCounter(SPEC)
    with counter, count_parts(counter, parts):
        out = model(*inputs)
        with counter.phase('backward'):
            out.backward(torch.empty_like(out))
    # afterwards: no hooks, no leaves' parts
    assert counter._leaf_parts == {}
    assert not any(module._forward_pre_hooks or module._forward_hooks for module in parts)
    summary = counter.summary()
    for phase, totals in summary['by_phase'].items():
        for key in ('ops', 'kernels', 'flops', 'bytes', 'seconds', 'compute_seconds'):
            assert totals[key] == pytest.approx(sum(
                t[key] for name, t in summary['by_part'].items()
                if name.startswith(f'{phase}: '))), (phase, key)
    return summary


def backward_alone(module: nn.Module, x: torch.Tensor) -> dict:
    """What ``module``'s backward costs counted on its own (no parts), from a given gradient."""
    module.zero_grad(set_to_none=True)
    out = module(x)
    with RooflineCounter(SPEC) as counter, counter.phase('backward'):
        out.backward(torch.empty_like(out))
    return counter.summary()['by_phase']['backward']


def test_backward_counts_for_the_part_whose_forward_created_the_node():
    model = nn.Sequential(nn.Linear(A, B), nn.Linear(B, C)).to('meta')
    parts = {model[0]: 'first', model[1]: 'second'}
    summary = backward_by_part(model, parts, meta(N, A))
    by_part = summary['by_part']
    assert set(by_part) == {'forward: first', 'forward: second', 'backward: first',
                            'backward: second'}
    # the second layer's gradients of its input and weight are 2 matmuls as large as its
    # forward; the first's input needs no gradient, only its weight does
    assert by_part['backward: second']['flops'] == 2 * (2 * N * B * C)
    assert by_part['backward: first']['flops'] == 2 * N * A * B
    # each part's backward is what that layer's backward costs counted on its own
    assert by_part['backward: first'] == backward_alone(model[0], meta(N, A))
    assert by_part['backward: second'] == backward_alone(model[1], meta(N, B, grad=True))

    # without parts, nothing but 'other', as before
    with RooflineCounter(SPEC) as counter:
        out = model(meta(N, A))
        with counter.phase('backward'):
            out.sum().backward()
    assert set(counter.summary()['by_part']) == {'forward: other', 'backward: other'}
    empty = backward_by_part(model, {}, meta(N, A))
    assert set(empty['by_part']) == {'forward: other', 'backward: other'}
    assert empty['by_phase'] == summary['by_phase']


class Checkpointed(nn.Module):
    """Two linear layers, the second recomputed in backward, inside its part's forward or
    around it. Its tanh saves its result, so that even a recomputation that stops once it has
    what backward needs (``use_reentrant=False``) recomputes the matmul."""

    def __init__(self, where: str, use_reentrant: bool) -> None:
        super().__init__()
        self.first = nn.Linear(A, B)
        self.second = nn.Sequential(nn.Linear(B, C), nn.Tanh())
        self.where, self.use_reentrant = where, use_reentrant
        if where == 'inside':
            self.second.forward = self.checkpointed(self.second.forward)

    def checkpointed(self, function):
        return lambda x: checkpoint(function, x, use_reentrant=self.use_reentrant)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.first(x)
        return self.checkpointed(self.second)(h) if self.where == 'around' else self.second(h)


@pytest.mark.parametrize('use_reentrant', [False, True])
@pytest.mark.parametrize('where', ['inside', 'around'])
def test_recomputation_counts_as_backward_of_its_part(where, use_reentrant):
    model = Checkpointed(where, use_reentrant).to('meta')
    x = meta(N, A)
    summary = backward_by_part(model, {model.first: 'first', model.second: 'second'}, x)
    by_part = summary['by_part']
    # recomputed forward, then the gradients of input and weight
    assert by_part['backward: second']['flops'] == 3 * (2 * N * B * C)
    assert by_part['backward: first']['flops'] == 2 * N * A * B
    assert by_part.get('backward: other', {}).get('flops', 0) == 0
    # the parts change where operators count, not what is counted
    without_parts = backward_by_part(model, {}, x)
    assert summary['by_phase'] == without_parts['by_phase']
    assert summary['by_category'] == without_parts['by_category']


class LinearFunction(torch.autograd.Function):
    """``x @ w``, its backward two matmuls, as a custom autograd function."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return x @ weight

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, weight = ctx.saved_tensors
        return grad @ weight.t(), x.t() @ grad


class Tapped(nn.Module):
    """An encoder whose inner layer's output a hook taps (not the encoder's result), a custom
    function as a part's result, and a head run twice, whose gradients accumulate."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(A, B), nn.ReLU())
        self.custom = nn.Module()
        self.custom.weight = nn.Parameter(torch.empty(B, C))
        self.custom.forward = lambda h: LinearFunction.apply(h, self.custom.weight)
        self.head = nn.Linear(B, C)
        self.taps: list[torch.Tensor] = []
        self.encoder[0].register_forward_hook(
            lambda module, args, out: self.taps.append(out @ self.custom.weight.detach()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.taps.clear()
        h = self.encoder(x)
        return self.custom(h) + self.taps[0] + self.head(h) + self.head(h * 2)


def test_taps_custom_functions_and_gradient_accumulation_count_for_their_parts():
    model = Tapped().to('meta')
    parts = {model: 'model', model.encoder: 'encoder', model.custom: 'custom',
             model.head: 'head'}
    by_part = backward_by_part(model, parts, meta(N, A))['by_part']
    mm = 2 * N * B * C
    # the custom function's two matmuls, though its node is the part's result
    assert by_part['backward: custom']['flops'] == 2 * mm
    # each head call: gradients of input and weight
    assert by_part['backward: head']['flops'] == 2 * 2 * mm
    # the tap's matmul (created in the encoder's forward, used outside it), then the
    # encoder's layer: its weight only
    assert by_part['backward: encoder']['flops'] == mm + 2 * N * A * B

    # a second backward adds each gradient to the parameter's .grad: that is the part's of
    # the innermost module the parameter is in
    again = backward_by_part(model, parts, meta(N, A), zero_grad=False)['by_part']
    params = {'model': 0, 'encoder': 2, 'custom': 1, 'head': 2}  # weights and biases
    for part, count in params.items():
        name = f'backward: {part}'
        assert again[name]['ops'] == by_part[name]['ops'] + count, part
