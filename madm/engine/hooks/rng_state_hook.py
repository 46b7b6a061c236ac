import random
import re

import numpy as np
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmseg.registry import HOOKS


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save the global RNG states in checkpoints and restore them on resume.

    mmengine re-seeds from the config on resume, so without this hook a resumed run
    draws different dropout masks and augmentations than the uninterrupted run.
    Saved: Python's ``random``, numpy's legacy global generator and torch's CPU and
    CUDA generators, under ``checkpoint['rng_state']`` (tensors and builtins only,
    so weights-only loading accepts it).

    The states are restored at the first ``before_train_iter`` after a resume, that
    is after the train loop has fast-forwarded the dataloader (which would
    otherwise consume random numbers in the main process). Transforms that run in
    dataloader workers are re-seeded by mmengine per worker, so they replay the
    same way; with ``num_workers=0`` the replayed data of the first resumed
    iteration may differ.

    Only a resume restores them: a run that starts from a checkpoint's weights
    (``load_from`` without ``resume``) keeps the streams of its own
    ``randomness.seed``, its model's generator included (the hook replaces the
    ``_extra_state`` entries, where a UDA segmentor keeps its generator's state,
    with the model's own before mmengine loads the checkpoint into it).
    mmengine saves checkpoints on rank 0 only, so only rank 0
    gets its states back; the other ranks keep the streams mmengine seeded them
    with on resume (distinct per rank with ``diff_rank_seed``), rather than all
    replaying rank 0's.
    """

    priority = 'LOW'

    def __init__(self) -> None:
        self._pending: dict | None = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        np_state = np.random.get_state()
        checkpoint['rng_state'] = {
            'python': random.getstate(),
            'numpy': {'name': np_state[0], 'key': torch.from_numpy(np_state[1].astype(np.int64)),
                      'pos': int(np_state[2]), 'has_gauss': int(np_state[3]),
                      'cached_gaussian': float(np_state[4])},
            'torch': torch.get_rng_state(),
            'cuda': torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # Runner.load_checkpoint calls this hook for load_from as well as for a resume,
        # before it loads the weights into the model.
        if not getattr(runner, '_resume', False):
            self._keep_models_extra_state(getattr(runner, 'model', None), checkpoint)
            return
        if get_rank() == 0:
            self._pending = checkpoint.get('rng_state')

    @staticmethod
    def _keep_models_extra_state(model, checkpoint: dict) -> None:
        """Put the model's own ``_extra_state`` entries into ``checkpoint``'s state dict.

        Replaced rather than deleted, so that mmengine does not report them as missing.
        """
        # mmengine loads a checkpoint without 'state_dict' as the state dict itself.
        state_dict = checkpoint.get('state_dict', checkpoint)
        while hasattr(model, 'module'):  # DDP, and a test-time-augmentation wrapper
            model = model.module
        own = model.state_dict() if model is not None else {}
        for key in [k for k in state_dict if k.endswith('_extra_state')]:
            # mmengine strips a leading 'module.' (its default revise_keys) after this hook.
            bare = re.sub(r'^(module\.)+', '', key)
            if bare in own:
                state_dict[key] = own[bare]
            else:
                del state_dict[key]

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        random.setstate(_as_tuple(state['python']))
        np_state = state['numpy']
        np.random.set_state((np_state['name'], np_state['key'].numpy().astype(np.uint32),
                             np_state['pos'], np_state['has_gauss'], np_state['cached_gaussian']))
        torch.set_rng_state(state['torch'])
        if state['cuda'] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state['cuda'])


def _as_tuple(obj):
    """``random.setstate`` needs the nested tuples that a checkpoint may have turned into lists."""
    if isinstance(obj, (list, tuple)):
        return tuple(_as_tuple(x) for x in obj)
    return obj
