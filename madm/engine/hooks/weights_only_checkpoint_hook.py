from mmengine.hooks import Hook
from mmseg.registry import HOOKS

from madm.utils.weights_only import decode_checkpoint, encode_checkpoint


@HOOKS.register_module()
class WeightsOnlyCheckpointHook(Hook):
    """Save checkpoints that ``torch.load(weights_only=True)`` accepts.

    With this hook, ``--resume``, ``load_from`` and ``tools/test.py CONFIG CKPT``
    work under torch's default ``weights_only=True`` without any environment
    variable: before a checkpoint is written, the MessageHub's ``HistoryBuffer``
    and numpy objects are encoded as tensors and builtins; after a checkpoint is
    loaded they are decoded again (see :mod:`madm.utils.weights_only`). Plain
    state-dict checkpoints pass through unchanged.

    ``configs/_base_/default_runtime.py`` adds it to ``custom_hooks``. Its priority
    is ``'LOWEST'`` so that it encodes what every other hook added to the
    checkpoint, and it decodes right after loading, before the runner reads the
    MessageHub state.
    """

    priority = 'LOWEST'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        encoded = encode_checkpoint(checkpoint)
        checkpoint.clear()
        checkpoint.update(encoded)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        decoded = decode_checkpoint(checkpoint)
        checkpoint.clear()
        checkpoint.update(decoded)
