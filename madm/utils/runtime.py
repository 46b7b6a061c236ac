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


#: Odd 64-bit constant (2^64 / golden ratio) that spreads ranks far apart in seed space.
_RANK_STRIDE = 0x9E3779B97F4A7C15


def adaptation_seed() -> int:
    """Seed for a model's own generator: torch's seed of this run, mixed with the process rank.

    mmengine's ``Runner`` seeds torch from ``randomness.seed`` (plus the rank when
    ``diff_rank_seed``) before it builds the model, so a model built by a runner
    draws a stream that changes with the run's seed and differs between processes,
    as the reference's seed 42 + rank (method.md §7). Rank 0 uses the run's seed
    itself; rank r adds r times a large odd constant rather than r, so that seed s
    on rank 1 does not replay seed s + 1 on rank 0 in a multi-process seed sweep.
    """
    return (torch.initial_seed() + get_rank() * _RANK_STRIDE) % 2**64
