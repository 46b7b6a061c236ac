"""Tests for the learnable prompt / time conditioning (method.md §2.4)."""
import torch

from madm.models.backbones import PromptTimeConditioning


def _module(length=3, dim=4, time_dim=6):
    empty = torch.arange(length * dim, dtype=torch.float32).reshape(1, length, dim) / 10
    return PromptTimeConditioning(empty, time_embed_dim=time_dim), empty


def test_init_values():
    torch.manual_seed(0)
    cond, empty = _module(length=77, dim=32, time_dim=128)
    assert torch.equal(cond.alpha_time, torch.zeros(128))
    assert torch.equal(cond.time_offset(), torch.zeros(1, 128))
    for gate in (cond.alpha_cond, cond.alpha_uncond):
        assert gate.min() >= 0 and gate.max() <= 1 and 0.4 < gate.mean() < 0.6
    assert abs(cond.prompt.std().item() - 0.02) < 0.002
    assert abs(cond.time_embed.std().item() - 0.02) < 0.006
    assert torch.equal(cond.empty_prompt_embedding, empty)
    assert not cond.empty_prompt_embedding.requires_grad


def test_context_and_time_offset_by_hand():
    cond, empty = _module()
    with torch.no_grad():
        cond.alpha_uncond.fill_(0.5)
        cond.alpha_cond.fill_(-1.0)
        cond.prompt.fill_(2.0)
        cond.alpha_time.fill_(0.25)
        cond.time_embed.copy_(torch.arange(6.0).unsqueeze(0))
    ctx = cond.context(batch_size=2)
    assert ctx.shape == (2, 3, 4)
    # tanh(0.5) = 0.462117, tanh(-1) = -0.761594
    expected = 0.46211716 * empty - 0.76159416 * 2.0
    torch.testing.assert_close(ctx, expected.expand(2, -1, -1))
    torch.testing.assert_close(cond.time_offset(), 0.24491866 * torch.arange(6.0).unsqueeze(0))


def test_buffer_is_in_state_dict_and_gradients_reach_all_parameters():
    cond, _ = _module()
    assert 'empty_prompt_embedding' in cond.state_dict()
    with torch.no_grad():
        cond.alpha_time.fill_(0.1)
    (cond.context(2).sum() + cond.time_offset().sum()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in cond.parameters())
