"""Pseudo-labels and confidence weights (method.md §6)."""
import math

import pytest
import torch

from madm.models.uda import class_balanced_selection, confident_share, pseudo_label_and_weight


def _logits_from_probs(p_class1: list[list[float]]) -> torch.Tensor:
    """2-class logits (1, 2, H, W) whose softmax gives p_class1 for class 1."""
    p = torch.tensor(p_class1, dtype=torch.float64)
    return torch.stack([torch.zeros_like(p), torch.log(p / (1 - p))])[None].float()


def test_image_mode_is_the_per_image_confident_share():
    # max-probs 0.99, 0.99 (class 0: p1=0.01), 0.5, 0.9 -> 2 of 4 are >= 0.968.
    logits = _logits_from_probs([[0.99, 0.01], [0.5001, 0.9]])
    label, weight = pseudo_label_and_weight(logits)
    assert torch.equal(label, torch.tensor([[[1, 0], [1, 1]]]))
    assert label.dtype == torch.long and weight.dtype == torch.float32
    torch.testing.assert_close(weight, torch.full((1, 2, 2), 0.5))


def test_image_mode_is_per_image_not_per_batch():
    confident = _logits_from_probs([[0.99, 0.99], [0.99, 0.99]])
    unsure = _logits_from_probs([[0.99, 0.6], [0.6, 0.6]])
    _, weight = pseudo_label_and_weight(torch.cat([confident, unsure]))
    torch.testing.assert_close(weight[:, 0, 0], torch.tensor([1.0, 0.25]))
    # the reference's single batch scalar would be 5/8 for both images


def test_pixel_mode_and_ignore_mask():
    logits = _logits_from_probs([[0.99, 0.01], [0.5001, 0.9]])
    _, weight = pseudo_label_and_weight(logits, mode='pixel')
    assert torch.equal(weight, torch.tensor([[[1.0, 1.0], [0.0, 0.0]]]))
    ignore = torch.tensor([[[True, False], [False, False]]])
    _, weight = pseudo_label_and_weight(logits, ignore_mask=ignore)
    # q is computed over all pixels first (0.5), then the masked pixel is zeroed.
    assert torch.equal(weight, torch.tensor([[[0.0, 0.5], [0.5, 0.5]]]))


def test_threshold_and_half_precision_logits():
    logits = _logits_from_probs([[0.97, 0.96]]).half()
    _, weight = pseudo_label_and_weight(logits, threshold=0.968)
    torch.testing.assert_close(weight, torch.full((1, 1, 2), 0.5))
    _, weight = pseudo_label_and_weight(logits, threshold=0.95)
    torch.testing.assert_close(weight, torch.ones(1, 1, 2))


def test_confident_share_and_bad_mode():
    max_prob = torch.tensor([[[0.968, 0.5], [1.0, 0.1]]])
    torch.testing.assert_close(confident_share(max_prob, 0.968), torch.tensor([0.5]))
    with pytest.raises(ValueError, match='mode'):
        pseudo_label_and_weight(torch.zeros(1, 2, 1, 1), mode='batch')
    assert math.isclose(float(confident_share(torch.ones(2, 3, 3)).sum()), 2.0)


def test_class_balanced_selection_equals_a_per_class_sort():
    gen = torch.Generator().manual_seed(0)
    max_prob = torch.rand(2, 7, 9, generator=gen)
    label = torch.randint(0, 4, (2, 7, 9), generator=gen)
    label[label == 2] = 3  # a class that is never predicted
    for share in (0.3, 0.5, 1.0):
        kept = class_balanced_selection(max_prob, label, share)
        expected = torch.zeros(label.numel(), dtype=torch.bool)
        for c in label.unique():
            idx = (label.reshape(-1) == c).nonzero().squeeze(1)
            top = idx[torch.argsort(-max_prob.reshape(-1)[idx])][:math.ceil(share * len(idx))]
            expected[top] = True
        assert torch.equal(kept, expected.view_as(label))


def test_class_balanced_mode_keeps_a_rare_unsure_class_and_caps_a_dominant_one():
    # class 1 on 6 pixels (0.99 .. 0.94), class 0 on 2 pixels with low confidence (0.6, 0.55)
    logits = _logits_from_probs([[0.99, 0.98, 0.97, 0.4], [0.96, 0.95, 0.94, 0.45]])
    label, weight = pseudo_label_and_weight(logits, mode='class_balanced', class_keep_share=0.5)
    assert torch.equal(weight, torch.tensor([[[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]]))
    _, by_threshold = pseudo_label_and_weight(logits, mode='pixel', threshold=0.9)
    assert by_threshold[0, :, 3].sum() == 0  # a global threshold drops the unsure class
    with pytest.raises(ValueError, match='keep_share'):
        class_balanced_selection(torch.rand(1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), 0)
