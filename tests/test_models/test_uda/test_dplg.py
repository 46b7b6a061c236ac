"""DPLG schedule (method.md §4)."""
import pytest
import torch

from madm.models.uda import dplg_timestep, sample_start_timestep


def test_depth_schedule_matches_spec_table():
    # method.md §4: depth k0=60, T_end=5000; the 11 (not 12) comes from float64 rounding.
    steps = [dplg_timestep(i, 60, 5000) for i in range(0, 5001, 1000)]
    assert steps == [60, 48, 36, 24, 11, 0]


def test_infrared_event_schedule_matches_spec_table():
    steps = [dplg_timestep(i, 50, 8000) for i in range(0, 8001, 1000)]
    assert steps == [50, 43, 37, 31, 25, 18, 12, 6, 0]


def test_zero_after_end_and_start_value_at_zero():
    assert dplg_timestep(0, 61, 5000) == 61
    assert dplg_timestep(5001, 60, 5000) == 0
    assert dplg_timestep(10**6, 60, 5000) == 0
    # 1 iteration before the end: floor(60 * 1/5000) = 0; halfway: 30.
    assert dplg_timestep(4999, 60, 5000) == 0
    assert dplg_timestep(2500, 60, 5000) == 30


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match='end_iter'):
        dplg_timestep(0, 60, 0)
    with pytest.raises(ValueError, match='cur_iter'):
        dplg_timestep(-1, 60, 5000)


def test_start_timestep_is_inclusive_and_seeded():
    gen = torch.Generator().manual_seed(0)
    draws = [sample_start_timestep(60, 61, gen) for _ in range(200)]
    assert set(draws) == {60, 61}  # Python randint semantics: both ends (method.md §11.4)
    again = torch.Generator().manual_seed(0)
    assert [sample_start_timestep(60, 61, again) for _ in range(200)] == draws
    assert sample_start_timestep(50, 50, gen) == 50
    with pytest.raises(ValueError, match='low <= high'):
        sample_start_timestep(61, 60, gen)
