import io
import pickle

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub

from madm.engine.hooks import WeightsOnlyCheckpointHook
from madm.utils.weights_only import decode_checkpoint, encode_checkpoint


def _mmengine_like_checkpoint(name):
    hub = MessageHub.get_instance(name)  # a fresh hub per test
    hub.update_scalar('train/loss', 1.5)
    hub.update_scalar('train/loss', 0.5, count=2)
    hub.update_info('iter', 7)
    return {
        'meta': {'iter': 7, 'seed': np.int64(42), 'dataset_meta': {'classes': ('a', 'b')},
                 'np_array': np.arange(6, dtype=np.float32).reshape(2, 3),
                 'dtype': np.dtype('float32')},
        'state_dict': {'w': torch.ones(2)},
        'message_hub': hub.state_dict(),
        'optimizer': {'state': {0: {'step': torch.tensor(3.0)}}, 'param_groups': [{'lr': 0.1}]},
    }


def _save_and_load(obj, weights_only=True):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=weights_only)


def test_raw_mmengine_checkpoint_is_rejected_by_weights_only():
    # The problem the hook solves: torch's default refuses mmengine's objects.
    with pytest.raises(pickle.UnpicklingError):
        _save_and_load(_mmengine_like_checkpoint('weights_only_raw'))


def test_hook_round_trip_under_weights_only():
    ckpt = _mmengine_like_checkpoint('weights_only_round_trip')
    hook = WeightsOnlyCheckpointHook()
    hook.before_save_checkpoint(None, ckpt)
    loaded = _save_and_load(ckpt, weights_only=True)
    hook.after_load_checkpoint(None, loaded)

    buf = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(buf, HistoryBuffer)
    assert buf.data[0].tolist() == [1.5, 0.5] and buf.data[1].tolist() == [1, 2]
    assert buf.mean() == pytest.approx(2.0 / 3.0)  # (1.5 + 0.5) / (1 + 2)
    assert loaded['message_hub']['runtime_info']['iter'] == 7
    meta = loaded['meta']
    assert meta['seed'] == 42 and isinstance(meta['seed'], int)
    np.testing.assert_array_equal(meta['np_array'], np.arange(6, dtype=np.float32).reshape(2, 3))
    assert meta['dtype'] == np.dtype('float32')
    assert meta['dataset_meta']['classes'] == ('a', 'b')
    assert torch.equal(loaded['state_dict']['w'], torch.ones(2))

    hub = MessageHub.get_instance('weights_only_test_restore')
    hub.load_state_dict(loaded['message_hub'])  # what Runner.resume does next
    assert hub.get_scalar('train/loss').current() == 0.5


def test_plain_state_dict_passes_through():
    ckpt = {'state_dict': {'w': torch.arange(3.0)}, 'meta': {'iter': 1}}
    assert decode_checkpoint(encode_checkpoint(ckpt))['state_dict']['w'].tolist() == [0, 1, 2]
    assert _save_and_load(ckpt)['meta'] == {'iter': 1}
