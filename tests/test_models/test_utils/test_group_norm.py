"""Tests for the GroupNorm that stays in the autocast dtype (issue 8's norm lever)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from madm.models.utils import AutocastGroupNorm, use_autocast_group_norm


def _norm(affine=True, seed=0):
    torch.manual_seed(seed)
    norm = nn.GroupNorm(4, 16, eps=1e-6, affine=affine)
    if affine:
        nn.init.normal_(norm.weight, 1.0, 0.5)
        nn.init.normal_(norm.bias, 0.0, 0.5)
    return norm


def _input(seed=1):
    return torch.randn(2, 16, 8, 8, generator=torch.Generator().manual_seed(seed)) * 3 + 1


def _swapped(norm):
    holder = nn.Sequential(norm)
    assert use_autocast_group_norm(holder) == 1
    return holder[0]


@pytest.mark.parametrize('affine', [True, False])
def test_without_autocast_it_is_group_norm(affine):
    ref = _norm(affine)
    norm = _swapped(_norm(affine))
    x = _input().requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    out, expected = norm(x), ref(x_ref)
    assert torch.equal(out, expected)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad)
    assert torch.equal(x.grad, x_ref.grad)
    if affine:
        assert torch.equal(norm.weight.grad, ref.weight.grad)
        assert torch.equal(norm.bias.grad, ref.bias.grad)


def test_under_autocast_it_normalises_in_the_autocast_dtype():
    norm = _norm()
    x = _input()
    expected = norm(x)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        plain = norm(x)
    assert plain.dtype == torch.float32  # CPU autocast leaves a float32 input in float32
    swapped = _swapped(norm)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = swapped(x)
        exact = F.group_norm(x.bfloat16(), 4, norm.weight.bfloat16(), norm.bias.bfloat16(),
                             norm.eps)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, exact)
    # bf16 keeps 8 significant bits: the outputs (|y| up to ~5) agree to a few 1e-2.
    torch.testing.assert_close(out.float(), expected, atol=0.05, rtol=0.02)


def test_the_kernel_runs_with_autocast_off(monkeypatch):
    # On CUDA, autocast would cast the bf16 input back to float32 if it were still on.
    calls = []
    group_norm = F.group_norm

    def spy(x, *args, **kwargs):
        calls.append((x.dtype, torch.is_autocast_enabled('cpu')))
        return group_norm(x, *args, **kwargs)

    monkeypatch.setattr(F, 'group_norm', spy)
    norm = _swapped(_norm())
    with torch.autocast('cpu', dtype=torch.bfloat16):
        norm(_input())
        assert torch.is_autocast_enabled('cpu')  # and it is on again afterwards
    assert calls == [(torch.bfloat16, False)]


def test_gradients_reach_the_float32_parameters():
    ref = _norm()
    norm = _swapped(_norm())
    x = _input()
    ref(x).square().sum().backward()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = norm(x)
    out.float().square().sum().backward()
    assert norm.weight.dtype == norm.weight.grad.dtype == torch.float32
    torch.testing.assert_close(norm.weight.grad, ref.weight.grad, atol=0.5, rtol=0.03)
    torch.testing.assert_close(norm.bias.grad, ref.bias.grad, atol=0.5, rtol=0.03)


def test_swap_keeps_parameters_state_and_mode():
    model = nn.Sequential(nn.Conv2d(3, 16, 3), _norm(), nn.Sequential(_norm(affine=False)),
                          nn.BatchNorm2d(16), AutocastGroupNorm(2, 16))
    model[2].eval()
    hooked = []
    model[1].register_forward_hook(lambda *args: hooked.append(1))
    params = [id(p) for p in model.parameters()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert use_autocast_group_norm(model) == 2  # the already swapped one is left alone
    assert type(model[1]) is AutocastGroupNorm and type(model[2][0]) is AutocastGroupNorm
    assert type(model[3]) is nn.BatchNorm2d
    assert [id(p) for p in model.parameters()] == params
    assert model.state_dict().keys() == state.keys()
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert model[1].training and not model[2][0].training
    assert (model[1].num_groups, model[1].num_channels, model[1].eps) == (4, 16, 1e-6)
    assert use_autocast_group_norm(model) == 0
    model(torch.randn(1, 3, 5, 5))
    assert hooked == [1]  # the same module objects, hooks included


def test_compiles_without_graph_breaks_under_autocast():
    # A graph break at each of the UNet's 61 norms would undo torch.compile (issue 8).
    model = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), _norm(), nn.SiLU(),
                          nn.Conv2d(16, 16, 3, padding=1), _norm(seed=1))
    use_autocast_group_norm(model)
    compiled = torch.compile(model, backend='aot_eager', fullgraph=True)
    x = torch.randn(2, 8, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out, expected = compiled(x), model(x)
    assert out.dtype == torch.bfloat16 and torch.equal(out, expected)
