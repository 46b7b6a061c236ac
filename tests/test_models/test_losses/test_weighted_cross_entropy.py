"""The pixel-weighted CE of MADM is mmseg's CrossEntropyLoss with avg_non_ignore=False (method.md §6).

The reference computes ``Σ_px w(px)·CE(px) / #all px``: ignored pixels add 0 to the sum
but count in the denominator. mmseg's loss with a per-pixel ``weight`` and
``avg_non_ignore=False`` divides by ``label.numel()`` too, so no madm loss is needed.
"""
import math

import pytest
import torch
from mmseg.models.losses import CrossEntropyLoss

# mmseg warns that avg_non_ignore=False is its default; here that is the point.
pytestmark = pytest.mark.filterwarnings('ignore:Default ``avg_non_ignore``:UserWarning')


def test_mmseg_ce_with_pixel_weight_matches_reference_normalisation():
    logits = torch.zeros(1, 2, 2, 2)  # uniform: CE = log 2 on every labelled pixel
    label = torch.tensor([[[0, 1], [255, 1]]])
    weight = torch.tensor([[[1.0, 0.5], [1.0, 0.5]]])
    loss = CrossEntropyLoss(avg_non_ignore=False)(logits, label, weight=weight, ignore_index=255)
    # (1 + 0.5 + 0 + 0.5)·log 2 / 4 pixels (the ignored one included)
    assert loss.item() == pytest.approx(0.5 * math.log(2), rel=1e-6)
    # avg_non_ignore=True would divide by 3 labelled pixels instead: not the reference.
    loss_non_ignore = CrossEntropyLoss(avg_non_ignore=True)(logits, label, weight=weight, ignore_index=255)
    assert loss_non_ignore.item() == pytest.approx(2 * math.log(2) / 3, rel=1e-6)


def test_source_ce_without_weight_is_mean_over_all_pixels():
    logits = torch.tensor([[[[2.0]], [[0.0]]]]).expand(1, 2, 1, 2).contiguous()
    label = torch.tensor([[[0, 255]]])
    loss = CrossEntropyLoss(avg_non_ignore=False)(logits, label, ignore_index=255)
    # CE of pixel 0 = log(1 + e^-2); pixel 1 is ignored but counted: / 2
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-2)) / 2, rel=1e-6)
