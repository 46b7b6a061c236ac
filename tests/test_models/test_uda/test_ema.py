"""EMA teacher update (method.md §7)."""
import copy

import pytest
import torch
from torch import nn

from madm.models.uda import ema_update_, teacher_alpha


def test_teacher_alpha_warmup():
    assert teacher_alpha(0, 0.999) == 0.0
    assert teacher_alpha(1, 0.999) == 0.5
    assert teacher_alpha(9, 0.999) == pytest.approx(0.9)
    assert teacher_alpha(999, 0.999) == pytest.approx(0.999)  # 1 - 1/1000, exactly the cap
    assert teacher_alpha(5000, 0.999) == 0.999
    with pytest.raises(ValueError, match='keep-rate'):
        teacher_alpha(3, 1.5)


class _Net(nn.Module):

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 1)
        self.bn = nn.BatchNorm2d(3)
        self.steps = nn.Parameter(torch.tensor([1, 2]), requires_grad=False)  # integer parameter


def test_ema_update_matches_hand_loop_and_skips_buffers_and_ints():
    torch.manual_seed(0)
    student = _Net()
    teacher = copy.deepcopy(student)
    with torch.no_grad():
        for p in teacher.parameters():
            if p.dtype.is_floating_point:
                p.normal_()
        student.bn.running_mean.fill_(7.0)
        student.steps.copy_(torch.tensor([5, 6]))
    expected = {
        name: 0.75 * t.detach().clone() + 0.25 * dict(student.named_parameters())[name].detach()
        for name, t in teacher.named_parameters() if t.dtype.is_floating_point
    }
    teacher_bn_mean = teacher.bn.running_mean.clone()

    ema_update_(teacher, student, alpha=0.75)

    for name, t in teacher.named_parameters():
        if name == 'steps':
            assert torch.equal(t, torch.tensor([1, 2]))  # integer parameters are not averaged
        else:
            torch.testing.assert_close(t, expected[name])
    assert torch.equal(teacher.bn.running_mean, teacher_bn_mean)  # buffers untouched


def test_ema_update_equals_per_parameter_lerp_bit_for_bit():
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(5, 7), nn.Linear(7, 3).to(torch.bfloat16), nn.Linear(3, 2))
    teacher = copy.deepcopy(student)
    teacher[2].to(torch.bfloat16)  # a bf16 teacher part averaging a float32 student part
    with torch.no_grad():
        for p in teacher.parameters():
            p.normal_()
    expected = [t.detach().lerp(s.detach().to(t.dtype), 1.0 - 0.999)
                for t, s in zip(teacher.parameters(), student.parameters())]
    ema_update_(teacher, student, alpha=0.999)
    for t, e in zip(teacher.parameters(), expected):
        assert t.dtype == e.dtype and torch.equal(t, e)
    assert teacher[2].weight.dtype == torch.bfloat16


def test_ema_update_of_a_part_without_float_parameters():
    teacher, student = nn.ReLU(), nn.ReLU()
    ema_update_(teacher, student, alpha=0.5)  # nothing to average, and no error


def test_ema_update_scalar_values():
    teacher, student = nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        teacher.weight.fill_(1.0)
        student.weight.fill_(3.0)
    ema_update_(teacher, student, alpha=0.75)
    assert teacher.weight.item() == pytest.approx(1.5)  # 0.75·1 + 0.25·3
    ema_update_(teacher, student, alpha=0.0)  # iteration 0 of the warm-up: copy the student
    assert teacher.weight.item() == pytest.approx(3.0)
    assert not teacher.weight.grad_fn


def test_ema_update_rejects_mismatched_names():
    with pytest.raises(ValueError, match='same parameter names'):
        ema_update_(nn.Linear(2, 2), nn.Conv2d(2, 2, 1, bias=False), 0.9)
