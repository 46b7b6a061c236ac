"""Mean-teacher EMA with the DAFormer warm-up (method.md §1 step 1, §7)."""
import torch
from torch import nn


def teacher_alpha(cur_iter: int, alpha: float) -> float:
    """Return the EMA keep-rate for iteration ``cur_iter``: ``min(1 − 1/(i+1), alpha)``.

    The warm-up makes the teacher follow the student closely in the first
    iterations (DAFormer; MADM ``cmdise.py:337-349``, method.md §7). Note the
    convention: this is the keep-rate α, mmengine's ``momentum`` is ``1 − α``.

    Args:
        cur_iter (int): 0-based training iteration ``i``.
        alpha (float): Final keep-rate, 0.999 in MADM.

    Returns:
        float: The keep-rate in ``[0, alpha]``; 0 at ``i = 0``, 0.5 at ``i = 1``.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f'alpha is a keep-rate in [0, 1], got {alpha}.')
    return min(1.0 - 1.0 / (cur_iter + 1), alpha)


@torch.no_grad()
def ema_update_(teacher: nn.Module, student: nn.Module, alpha: float) -> None:
    """Update ``teacher`` in place: ``θ_t ← α·θ_t + (1 − α)·θ_s``.

    Parameters are matched by name, and only floating-point parameters are
    averaged. Buffers (e.g. BN running stats) are left alone, as in the
    reference (method.md §7, "applied to parameters only").

    Args:
        teacher (nn.Module): The EMA copy, updated in place.
        student (nn.Module): The trained module with the same parameter names.
        alpha (float): Keep-rate α, e.g. from :func:`teacher_alpha`.

    Raises:
        ValueError: If the two modules do not have the same parameter names.
    """
    teacher_params = dict(teacher.named_parameters())
    student_params = dict(student.named_parameters())
    if teacher_params.keys() != student_params.keys():
        only_t = sorted(teacher_params.keys() - student_params.keys())
        only_s = sorted(student_params.keys() - teacher_params.keys())
        raise ValueError('ema_update_ needs teacher and student with the same parameter names; '
                         f'only in teacher: {only_t[:5]}, only in student: {only_s[:5]}. '
                         'Build the teacher as a deepcopy of the student.')
    names = [name for name, t in teacher_params.items() if t.dtype.is_floating_point]
    targets = [teacher_params[name] for name in names]
    sources = [student_params[name].to(teacher_params[name].dtype) for name in names]
    # lerp(s, w) computes t + w·(s − t) = (1 − w)·t + w·s, i.e. keep-rate α with w = 1 − α.
    # One multi-tensor launch per dtype and device instead of one per parameter: with
    # teacher_scope='full' an SD-1.4 teacher has over a thousand parameter tensors.
    if targets:  # the multi-tensor op refuses empty lists
        torch._foreach_lerp_(targets, sources, 1.0 - alpha)
