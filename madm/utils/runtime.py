"""Runtime information that belongs to the runner, read through mmengine's MessageHub."""
import torch
from mmengine.dist import get_rank
from mmengine.logging import MessageHub


def get_current_iter(default: int = 0) -> int:
    """The 0-based iteration the runner is training, from the MessageHub.

    ``RuntimeInfoHook`` writes ``iter`` before every training iteration and the
    value is restored on resume, unlike a counter kept on the model. Outside a
    runner (unit tests) ``default`` is returned.
    """
    value = MessageHub.get_current_instance().get_info('iter', default)
    return int(value)


def adaptation_seed() -> int:
    """Seed for a model's own generator: torch's seed of this run plus the process rank.

    mmengine's ``Runner`` seeds torch from ``randomness.seed`` (plus the rank when
    ``diff_rank_seed``) before it builds the model, so a model built by a runner
    draws a stream that changes with the run's seed and differs between processes,
    as the reference's seed 42 + rank (method.md §7).
    """
    return (torch.initial_seed() + get_rank()) % 2**64
