"""DACS ClassMix masks and mixing (method.md §7, §11.15)."""
import pytest
import torch

from madm.models.uda import class_mix_mask, class_mix_masks, mix

# image 0 holds classes {0, 1, 255}; image 1 only class 2.
LABELS = torch.tensor([
    [[0, 0, 1], [1, 255, 255]],
    [[2, 2, 2], [2, 2, 2]],
])


def _expected_choice(classes: list[int], seed: int, draws: int) -> list[set[int]]:
    """Replays the documented draw: one randperm per image, keep the first ceil(n/2)."""
    gen = torch.Generator().manual_seed(seed)
    n = len(classes)
    return [{classes[j] for j in torch.randperm(n, generator=gen)[:(n + 1) // 2].tolist()} for _ in range(draws)]


def test_batch_scope_draws_from_the_whole_batch_including_ignore():
    masks = class_mix_masks(LABELS, torch.Generator().manual_seed(3))
    chosen = _expected_choice([0, 1, 2, 255], seed=3, draws=2)
    assert all(len(c) == 2 for c in chosen)  # ceil(4 / 2)
    for i in range(2):
        assert torch.equal(masks[i], torch.isin(LABELS[i], torch.tensor(sorted(chosen[i]))))


def test_batch_scope_can_leave_an_image_unmixed_but_image_scope_cannot():
    # In batch scope image 1 gets a mask only if class 2 is drawn among 2 of {0,1,2,255}.
    seeds_empty = [s for s in range(50) if 2 not in _expected_choice([0, 1, 2, 255], s, 2)[1]]
    assert seeds_empty, 'some seed must skip class 2 for image 1'
    masks = class_mix_masks(LABELS, torch.Generator().manual_seed(seeds_empty[0]), scope='batch')
    assert not masks[1].any()
    # Image scope: image 1's only class is always chosen (ceil(1/2) = 1), whatever the seed.
    for seed in range(5):
        masks = class_mix_masks(LABELS, torch.Generator().manual_seed(seed), scope='image')
        assert masks[1].all()
        # image 0: 2 of its 3 classes {0, 1, 255}, so between 3 and 4 of its 6 pixels.
        present = {int(v) for v in LABELS[0][masks[0]].unique()}
        assert len(present) == 2 and present <= {0, 1, 255}


def test_include_ignore_false_never_pastes_ignored_pixels():
    for seed in range(10):
        masks = class_mix_masks(LABELS, torch.Generator().manual_seed(seed), scope='image', include_ignore=False)
        assert not masks[0][LABELS[0] == 255].any()
        # candidates {0, 1}: exactly one class, so exactly its 2 pixels.
        assert int(masks[0].sum()) == 2
    all_ignored = torch.full((1, 2, 2), 255)
    masks = class_mix_masks(all_ignored, torch.Generator().manual_seed(0), include_ignore=False)
    assert masks.dtype == torch.bool and not masks.any()


def test_deterministic_with_seeded_generator():
    a = class_mix_masks(LABELS, torch.Generator().manual_seed(11))
    b = class_mix_masks(LABELS, torch.Generator().manual_seed(11))
    assert torch.equal(a, b)


def test_single_mask_rounds_half_up():
    label = torch.tensor([[0, 1, 2]])
    mask = class_mix_mask(label, torch.tensor([0, 1, 2]), torch.Generator().manual_seed(0))
    assert int(mask.sum()) == 2  # ceil(3 / 2) classes, one pixel each


def test_mix_images_labels_and_weights():
    mask = torch.tensor([[[True, False], [False, True]]])
    src_img = torch.ones(1, 3, 2, 2)
    tgt_img = torch.zeros(1, 3, 2, 2)
    mixed = mix(mask, src_img, tgt_img)
    assert torch.equal(mixed, torch.tensor([[1., 0.], [0., 1.]]).expand(1, 3, 2, 2))
    assert torch.equal(mix(mask, torch.tensor([[[5, 6], [7, 8]]]), torch.tensor([[[1, 2], [3, 4]]])),
                       torch.tensor([[[5, 2], [3, 8]]]))
    # pixel weight: 1 on pasted source pixels, q = 0.25 elsewhere (method.md §1 step 7).
    weight = mix(mask, torch.ones(1, 2, 2), torch.full((1, 2, 2), 0.25))
    assert torch.equal(weight, torch.tensor([[[1.0, 0.25], [0.25, 1.0]]]))
    with pytest.raises(ValueError, match='mask'):
        mix(mask[0], src_img, tgt_img)
