"""madm losses. The pixel-weighted CE of MADM is mmseg's ``CrossEntropyLoss`` with
``avg_non_ignore=False`` and a per-pixel ``weight`` (method.md §6; pinned by
``tests/test_models/test_losses/test_weighted_cross_entropy.py``)."""
from .accuracy import pixel_accuracy
from .latent_regression_loss import LatentRegressionLoss

__all__ = ['LatentRegressionLoss', 'pixel_accuracy']
