import random

import numpy as np
import torch

from madm.engine.hooks import RNGStateHook
from madm.utils.weights_only import decode_checkpoint, encode_checkpoint


def test_rng_streams_restored_at_first_train_iter_after_load():
    hook = RNGStateHook()
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    checkpoint = {}
    hook.before_save_checkpoint(None, checkpoint)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())

    # A resumed process starts from other states, and its dataloader fast-forward
    # consumes random numbers before the first iteration.
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    loaded = torch.load(_to_bytes(encode_checkpoint(checkpoint)), weights_only=True)
    hook.after_load_checkpoint(None, decode_checkpoint(loaded))
    np.random.rand(5)
    hook.before_train_iter(None, batch_idx=0)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected

    # Only once: later iterations keep drawing.
    hook.before_train_iter(None, batch_idx=1)
    assert random.random() != expected[0]


def _to_bytes(obj):
    import io
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return buf
