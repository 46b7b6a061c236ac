"""Make mmengine checkpoints loadable with ``torch.load(weights_only=True)``.

torch ≥ 2.6 loads with ``weights_only=True`` by default, and mmengine 0.10.7 calls
``torch.load`` without the argument. An mmengine checkpoint holds more than tensors:
the MessageHub's ``HistoryBuffer`` objects and numpy arrays, scalars and dtypes, none
of which the weights-only unpickler accepts, so ``resume`` and ``load_from`` fail.

Instead of switching the protection off (torch's environment switch to force unsafe loads
would do it for every load in the process), madm *writes* checkpoints that need no
exception: :func:`encode_checkpoint` replaces each such object with a tagged dict of
tensors and builtins before saving, and :func:`decode_checkpoint` restores it after
loading. :class:`madm.engine.hooks.WeightsOnlyCheckpointHook` calls both.
"""
from typing import Any

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

_TAG = '__madm_encoded__'


def encode_checkpoint(obj: Any) -> Any:
    """Return ``obj`` with every object the weights-only unpickler rejects encoded.

    Encoded: ``HistoryBuffer``, ``np.ndarray``, numpy scalars and ``np.dtype``.
    Containers (dict, list, tuple) are rebuilt recursively; tensors, builtins and
    everything else are returned as they are.
    """
    if isinstance(obj, HistoryBuffer):
        log, count = obj.data
        return {_TAG: 'HistoryBuffer', 'log': torch.from_numpy(np.asarray(log, np.float64)),
                'count': torch.from_numpy(np.asarray(count, np.float64)),
                'max_length': int(obj.max_length)}
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            return {_TAG: 'object_ndarray', 'items': [encode_checkpoint(x) for x in obj.tolist()]}
        return {_TAG: 'ndarray', 'data': torch.from_numpy(np.ascontiguousarray(obj))}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.dtype):
        return {_TAG: 'dtype', 'name': obj.str}
    if isinstance(obj, dict):
        encoded = {k: encode_checkpoint(v) for k, v in obj.items()}
        return type(obj)(encoded) if type(obj) is not dict else encoded
    if isinstance(obj, (list, tuple)) and not hasattr(obj, '_fields'):
        return type(obj)(encode_checkpoint(v) for v in obj)
    return obj


def decode_checkpoint(obj: Any) -> Any:
    """Invert :func:`encode_checkpoint` (numpy scalars come back as Python numbers)."""
    if isinstance(obj, dict):
        kind = obj.get(_TAG)
        if kind == 'HistoryBuffer':
            return HistoryBuffer(obj['log'].numpy().tolist(), obj['count'].numpy().tolist(),
                                 obj['max_length'])
        if kind == 'ndarray':
            return obj['data'].numpy()
        if kind == 'object_ndarray':
            return np.array([decode_checkpoint(x) for x in obj['items']], dtype=object)
        if kind == 'dtype':
            return np.dtype(obj['name'])
        decoded = {k: decode_checkpoint(v) for k, v in obj.items()}
        return type(obj)(decoded) if type(obj) is not dict else decoded
    if isinstance(obj, (list, tuple)) and not hasattr(obj, '_fields'):
        return type(obj)(decode_checkpoint(v) for v in obj)
    return obj
