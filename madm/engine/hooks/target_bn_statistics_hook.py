from itertools import islice

from mmengine import dist
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner
from mmseg.registry import HOOKS
from torch.utils.data import DataLoader

from madm.models.utils import batchnorm_layers, recompute_batchnorm_statistics


@HOOKS.register_module()
class TargetBNStatisticsHook(Hook):
    """Before testing, re-estimate the model's BN statistics on unlabelled target images.

    ``tools/test.py CONFIG CKPT`` with this hook in ``custom_hooks`` scores the checkpoint with
    batch-norm layers that normalise with the target images' statistics instead of those of
    the batches it trained on: AdaBN (Li et al., 2016) on a source-only model; not in MADM on
    a MADM student (configs/madm/demo_rgb2*_adabn.py, *_madm-target-bn.py). Only
    ``before_test``: during training it would overwrite the statistics the next iterations
    train with. In a distributed test each process averages over its own share of
    ``dataloader`` and the processes then average their statistics, so every process
    scores with the same ones.

    Args:
        dataloader (dict | DataLoader): The target images, built with
            ``Runner.build_dataloader`` when a dict; labels are not read.
        max_batches (int | None): Stop after this many batches. Defaults to None (all).
    """

    priority = 'HIGH'  # before anything that looks at the model's outputs

    def __init__(self, dataloader: dict | DataLoader, max_batches: int | None = None) -> None:
        if max_batches is not None and max_batches < 1:
            raise ValueError(f'max_batches must be at least 1, got {max_batches}')
        self.dataloader = dataloader
        self.max_batches = max_batches

    def before_test(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        loader = self.dataloader
        if isinstance(loader, dict):
            loader = Runner.build_dataloader(loader, seed=runner.seed)

        def forward(batch) -> None:
            data = model.data_preprocessor(batch, False)
            model(**data, mode='tensor')

        seen = recompute_batchnorm_statistics(model, islice(loader, self.max_batches), forward)
        if dist.get_world_size() > 1:  # equal shares: the mean of the means is the mean
            for layer in batchnorm_layers(model):
                dist.all_reduce(layer.running_mean, op='mean')
                dist.all_reduce(layer.running_var, op='mean')
        runner.logger.info(f'TargetBNStatisticsHook: BN statistics re-estimated on {seen} '
                           'target batches')
