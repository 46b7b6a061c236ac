"""LPLR: masked regression of the UNet output onto the palette-label latent (method.md §5.2)."""
from typing import Literal

import torch
import torch.nn.functional as F
from mmseg.registry import MODELS
from torch import Tensor, nn


@MODELS.register_module()
class LatentRegressionLoss(nn.Module):
    """Masked L1/L2 loss between the UNet's final output and the label latent.

    ``loss = loss_weight · Σ(|pred − target|^p ⊙ m) / D`` where the mask ``m``
    is the image-resolution ``valid_mask × weight`` resized to the latent size
    with ``'nearest'`` (the top-left pixel of each 8×8 cell, as the
    reference's ``F.interpolate``) and broadcast over the latent channels
    (``criterion.py:237-245``, method.md §5.2).

    Args:
        loss_type (Literal['l1', 'l2']): Element loss. Reference: ``'l1'``
            (method.md §5.2). Defaults to 'l1'.
        normalize (Literal['all', 'valid']): Denominator ``D``. ``'all'``
            divides by every element, N·4·h·w, so images with many ignored
            pixels contribute less. ``'valid'`` divides by the number of valid
            (mask-nonzero before weighting) elements. Reference: ``'all'``
            (method.md §5.2, §11.8). Defaults to 'all'.
        loss_weight (float): λ of the term (1.0 for depth/IR, 20.0 for event
            source; method.md §5.2). Defaults to 1.0.
        loss_name (str): Key in the loss dict; must start with ``loss_`` so
            mmengine back-propagates it. Defaults to 'loss_lplr'.
    """

    def __init__(self,
                 loss_type: Literal['l1', 'l2'] = 'l1',
                 normalize: Literal['all', 'valid'] = 'all',
                 loss_weight: float = 1.0,
                 loss_name: str = 'loss_lplr') -> None:
        super().__init__()
        if loss_type not in ('l1', 'l2'):
            raise ValueError(f"loss_type must be 'l1' or 'l2', got {loss_type!r}.")
        if normalize not in ('all', 'valid'):
            raise ValueError(f"normalize must be 'all' or 'valid', got {normalize!r}.")
        if not loss_name.startswith('loss_'):
            raise ValueError("loss_name must start with 'loss_' so that mmengine trains on it, "
                             f'got {loss_name!r}.')
        self.loss_type = loss_type
        self.normalize = normalize
        self.loss_weight = loss_weight
        self._loss_name = loss_name

    def forward(self,
                pred: Tensor,
                target: Tensor,
                valid_mask: Tensor,
                weight: Tensor | float = 1.0) -> Tensor:
        """Compute the loss.

        Args:
            pred (Tensor): UNet output ``o``, shape (N, 4, h, w).
            target (Tensor): Latent ``g`` of the painted label, shape (N, 4, h, w).
            valid_mask (Tensor): Bool or float mask at image resolution,
                shape (N, H, W) (``label != 255``).
            weight (Tensor | float): Confidence: a float, per image (N,) — the
                reference's ``q`` for the mixed term — or per pixel (N, H, W),
                resized like the mask. Defaults to 1.0.

        Returns:
            Tensor: Scalar loss.
        """
        if pred.shape != target.shape or pred.dim() != 4:
            raise ValueError(f'pred and target must both be (N, C, h, w); got {tuple(pred.shape)} '
                             f'and {tuple(target.shape)}.')
        if valid_mask.dim() != 3 or valid_mask.shape[0] != pred.shape[0]:
            raise ValueError(f'valid_mask must be (N, H, W) with N={pred.shape[0]}, '
                             f'got {tuple(valid_mask.shape)}.')
        latent_size = pred.shape[-2:]
        valid = self._to_latent(valid_mask.float(), latent_size)  # (N, 1, h, w)
        mask = valid
        if isinstance(weight, Tensor):
            weight = weight.to(pred.device, torch.float32)
            if weight.dim() == 1:
                mask = mask * weight.view(-1, 1, 1, 1)
            elif weight.dim() == 3:
                mask = mask * self._to_latent(weight, latent_size)
            elif weight.dim() != 0:
                raise ValueError('weight must be a float, (N,) or (N, H, W); '
                                 f'got shape {tuple(weight.shape)}.')
            else:
                mask = mask * weight
        else:
            mask = mask * float(weight)

        diff = pred.float() - target.float()
        element_loss = diff.abs() if self.loss_type == 'l1' else diff.pow(2)
        total = (element_loss * mask).sum()
        if self.normalize == 'all':
            denominator = pred.numel()
        else:
            # Count of valid elements over all channels; clamp so an all-ignored batch gives 0, not NaN.
            denominator = (valid.sum() * pred.shape[1]).clamp(min=1.0)
        return self.loss_weight * total / denominator

    @staticmethod
    def _to_latent(mask: Tensor, size: torch.Size) -> Tensor:
        """Resize an (N, H, W) map to (N, 1, h, w) with 'nearest' (top-left of each cell)."""
        return F.interpolate(mask.unsqueeze(1), size=tuple(size), mode='nearest')

    @property
    def loss_name(self) -> str:
        """str: Key of this loss in the loss dict (mmseg convention)."""
        return self._loss_name
