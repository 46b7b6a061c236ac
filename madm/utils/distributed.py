"""Distributed runs on CPU-only machines (gloo), which mmengine's launcher does not cover."""
import torch
import torch.distributed as dist
from mmengine.config import Config


def setup_cpu_distributed(cfg: Config) -> None:
    """Prepare ``cfg`` for a ``--launcher pytorch`` run on a machine without CUDA.

    mmengine 0.10.7's pytorch launcher calls ``torch.cuda.set_device`` and wraps the
    model with ``device_ids=[LOCAL_RANK]``; both fail without CUDA. Here the process
    group is initialised with gloo from torchrun's environment variables, and the
    model wrapper is configured with ``device_ids=None`` (what DDP needs for CPU
    modules). Does nothing for non-distributed runs or when CUDA is available.
    """
    if cfg.get('launcher', 'none') == 'none' or torch.cuda.is_available():
        return
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
    if cfg.get('model_wrapper_cfg') is None:
        cfg.model_wrapper_cfg = dict(
            type='MMDistributedDataParallel', device_ids=None, broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
