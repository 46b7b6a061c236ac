import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import madm.engine.hooks.rng_state_hook as rng_state_hook
from madm.engine.hooks import RNGStateHook
from madm.utils.weights_only import decode_checkpoint, encode_checkpoint


def _seed_all(python: int, numpy: int, torch_seed: int) -> None:
    random.seed(python)
    np.random.seed(numpy)
    torch.manual_seed(torch_seed)


def _draws() -> tuple:
    return random.random(), np.random.rand(), torch.rand(1).item()


def _saved_checkpoint(hook: RNGStateHook) -> dict:
    """A checkpoint saved with the global streams seeded (1, 2, 3)."""
    _seed_all(1, 2, 3)
    checkpoint = {}
    hook.before_save_checkpoint(None, checkpoint)
    return checkpoint


def test_rng_streams_restored_at_first_train_iter_after_load():
    hook = RNGStateHook()
    checkpoint = _saved_checkpoint(hook)
    expected = _draws()

    # A resumed process starts from other states, and its dataloader fast-forward
    # consumes random numbers before the first iteration.
    _seed_all(9, 9, 9)
    loaded = torch.load(_to_bytes(encode_checkpoint(checkpoint)), weights_only=True)
    hook.after_load_checkpoint(_runner(resume=True), decode_checkpoint(loaded))
    np.random.rand(5)
    hook.before_train_iter(None, batch_idx=0)
    assert _draws() == expected

    # Only once: later iterations keep drawing.
    hook.before_train_iter(None, batch_idx=1)
    assert random.random() != expected[0]


def _runner(resume):
    return SimpleNamespace(_resume=resume)


@pytest.mark.parametrize('resume,rank', [(False, 0), (True, 1)])
def test_rng_streams_kept_without_resume_and_on_other_ranks(monkeypatch, resume, rank):
    monkeypatch.setattr(rng_state_hook, 'get_rank', lambda: rank)
    hook = RNGStateHook()
    checkpoint = _saved_checkpoint(hook)
    # load_from (no resume) keeps the new run's seed; on a resume, ranks other than 0
    # keep their own streams instead of replaying rank 0's saved one.
    _seed_all(9, 9, 9)
    expected = _draws()
    _seed_all(9, 9, 9)
    hook.after_load_checkpoint(_runner(resume=resume), checkpoint)
    hook.before_train_iter(None, batch_idx=0)
    assert _draws() == expected


class _WithGenerator(torch.nn.Module):
    def __init__(self, seed):
        super().__init__()
        self.head = torch.nn.Linear(2, 2)
        self.generator = torch.Generator().manual_seed(seed)

    def get_extra_state(self):
        return self.generator.get_state()

    def set_extra_state(self, state):
        self.generator.set_state(state)


@pytest.mark.parametrize('wrapped', [False, True])
def test_load_from_keeps_the_models_own_generator(wrapped):
    saved, model = _WithGenerator(seed=1), _WithGenerator(seed=2)
    checkpoint = {'state_dict': dict(saved.state_dict(), **{'gone._extra_state': torch.zeros(1)})}
    runner = _runner(resume=False)
    runner.model = SimpleNamespace(module=model) if wrapped else model
    RNGStateHook().after_load_checkpoint(runner, checkpoint)
    # The weights load, the generator's state is the new run's; nothing is reported missing.
    assert model.load_state_dict(checkpoint['state_dict']) is not None
    assert torch.equal(model.head.weight, saved.head.weight)
    assert model.generator.initial_seed() == 2
    assert torch.equal(model.generator.get_state(), torch.Generator().manual_seed(2).get_state())
    # A bare state dict, and keys that mmengine will strip 'module.' from, are handled too.
    bare = dict(saved.state_dict())
    bare['module._extra_state'] = bare.pop('_extra_state')
    RNGStateHook().after_load_checkpoint(runner, bare)
    assert torch.equal(bare['module._extra_state'], model.generator.get_state())
    # On a resume the saved state stays.
    resumed = {'state_dict': saved.state_dict()}
    RNGStateHook().after_load_checkpoint(_runner(resume=True), resumed)
    assert torch.equal(resumed['state_dict']['_extra_state'], saved.generator.get_state())


def _to_bytes(obj):
    import io
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return buf
