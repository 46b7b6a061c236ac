"""DPLG timestep schedule: the teacher's noise level decays linearly to 0 (method.md §4)."""
import torch


def dplg_timestep(cur_iter: int, start_timestep: int, end_iter: int) -> int:
    """Return the DPLG timestep ``k`` for the teacher pass at iteration ``cur_iter``.

    ``k = floor(k0 · (1 − i / T_end))`` while ``i ≤ T_end``, else ``0`` (DPLG,
    method.md §4). The product is evaluated in float64 exactly as the reference
    does (``int(k0 * (1 - i / T_end))``), so rounding matches it bit for bit:
    depth (k0=60, T_end=5000) at i=4000 gives 11, not 12, because
    ``1 - 4000 / 5000`` is 0.19999999999999996 in binary floating point.

    Args:
        cur_iter (int): 0-based training iteration ``i``.
        start_timestep (int): The start step ``k0`` drawn for this iteration
            (see :func:`sample_start_timestep`).
        end_iter (int): Iteration ``T_end`` at which the step reaches 0
            (reference ``rev_noise_end_iter``: 5000 depth, 8000 IR/event).

    Returns:
        int: The DDPM timestep in ``[0, start_timestep]``.
    """
    if end_iter <= 0:
        raise ValueError(f'end_iter must be a positive iteration count, got {end_iter}.')
    if cur_iter < 0:
        raise ValueError(f'cur_iter must be >= 0, got {cur_iter}.')
    if cur_iter > end_iter:
        return 0
    # int() truncates toward zero, which is floor for the non-negative product.
    return int(start_timestep * (1 - cur_iter / end_iter))


def sample_start_timestep(low: int, high: int, generator: torch.Generator) -> int:
    """Draw the DPLG start step ``k0`` uniformly from ``{low, ..., high}``, both inclusive.

    The reference uses Python's ``random.randint(lo, hi)``, which includes
    ``hi`` (method.md §4, §11.4): ``[60, 61]`` draws 60 or 61.

    Args:
        low (int): Smallest step.
        high (int): Largest step (inclusive).
        generator (torch.Generator): Source of randomness; the caller owns
            its seed.

    Returns:
        int: A step in ``[low, high]``.
    """
    if high < low:
        raise ValueError(f'sample_start_timestep needs low <= high, got low={low}, high={high}.')
    # A CPU generator yields a CPU tensor, so reading the int back is no device sync.
    return int(torch.randint(low, high + 1, (1, ), generator=generator).item())
