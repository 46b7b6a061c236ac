"""Runtime information that belongs to the runner, read through mmengine's MessageHub."""
from mmengine.logging import MessageHub


def get_current_iter(default: int = 0) -> int:
    """The 0-based iteration the runner is training, from the MessageHub.

    ``RuntimeInfoHook`` writes ``iter`` before every training iteration and the
    value is restored on resume, unlike a counter kept on the model. Outside a
    runner (unit tests) ``default`` is returned.
    """
    value = MessageHub.get_current_instance().get_info('iter', default)
    return int(value)
