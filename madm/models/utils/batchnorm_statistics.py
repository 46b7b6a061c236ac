"""Re-estimating batch-norm statistics on another domain (AdaBN, Li et al., 2016).

A segmentor trained on labelled source images keeps the source's BN running statistics and
normalises target features with them. Re-estimating them on unlabelled target images is the
cheapest adaptation there is (no gradient, no labels), so it is the baseline that a UDA method
has to beat to show that its training adds something.
"""
from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def batchnorm_layers(model: nn.Module) -> list[_BatchNorm]:
    """The BN layers of ``model`` that keep running statistics (those worth re-estimating)."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recompute_batchnorm_statistics(model: nn.Module, batches: Iterable,
                                   forward: Callable[[object], object]) -> int:
    """Replace every BN layer's running statistics with their average over ``batches``.

    Each BN layer's statistics are reset and accumulated as a cumulative average
    (``momentum=None``) while ``forward`` runs on each batch with only the BN layers in
    training mode (dropout and the rest stay in eval mode). Afterwards the momenta and
    the training flags are restored; no parameter changes. A BN layer that ``forward``
    does not run keeps its statistics.

    Args:
        model (nn.Module): The model; its BN layers are updated in place.
        batches (Iterable): Batches for ``forward`` (images only are needed).
        forward (Callable[[object], object]): Runs ``model`` on one batch.

    Returns:
        int: Number of batches seen.

    Raises:
        ValueError: If ``model`` has no BN layer or ``batches`` is empty. If this or
            ``forward`` raises, the old statistics are kept.
    """
    layers = batchnorm_layers(model)
    if not layers:
        raise ValueError('the model has no batch-norm layer with running statistics to '
                         're-estimate')
    modes = {m: m.training for m in model.modules()}
    momenta = [m.momentum for m in layers]
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
             for m in layers]

    def restore(only_unused: bool) -> None:
        for layer, (mean, var, count) in zip(layers, saved):
            if not only_unused or int(layer.num_batches_tracked) == 0:
                layer.running_mean.copy_(mean)
                layer.running_var.copy_(var)
                layer.num_batches_tracked.copy_(count)

    seen = 0
    try:
        model.eval()
        for layer in layers:
            layer.reset_running_stats()
            layer.momentum = None  # cumulative average: every batch counts the same
            layer.train()
        for batch in batches:
            forward(batch)
            seen += 1
    except BaseException:
        restore(only_unused=False)
        raise
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
        for module, training in modes.items():
            module.training = training
    if seen == 0:
        restore(only_unused=False)
        raise ValueError('no batch to re-estimate the batch-norm statistics on; the '
                         'statistics were left as they were')
    # layers that ``forward`` never ran (e.g. an EMA teacher's) keep their statistics
    # instead of the reset 0 / 1
    restore(only_unused=True)
    return seen
