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


# ------------------------------------------------------------- on_device (no host sync)
def _chosen_classes(label: torch.Tensor, mask: torch.Tensor) -> set[int]:
    """The classes a mask pastes; a mask takes all or none of each class's pixels."""
    chosen = {int(v) for v in label[mask].unique()}
    assert not (torch.isin(label, torch.tensor(sorted(chosen) or [-1])) & ~mask).any()
    return chosen


@pytest.mark.parametrize('scope', ['batch', 'image'])
@pytest.mark.parametrize('include_ignore', [True, False])
def test_on_device_chooses_half_of_the_present_classes(scope, include_ignore):
    for seed in range(20):
        masks = class_mix_masks(LABELS, torch.Generator().manual_seed(seed), scope=scope,
                                include_ignore=include_ignore, on_device=True, num_classes=3)
        assert masks.shape == LABELS.shape and masks.dtype == torch.bool
        for i in range(2):
            candidates = set(LABELS.unique().tolist() if scope == 'batch' else
                             LABELS[i].unique().tolist()) - (set() if include_ignore else {255})
            chosen_here = _chosen_classes(LABELS[i], masks[i])
            assert chosen_here <= candidates and (include_ignore or 255 not in chosen_here)
            if scope == 'image':  # every candidate occurs in the image: the count is exact
                assert len(chosen_here) == (len(candidates) + 1) // 2


def test_on_device_draws_a_uniform_half_and_one_key_set_per_image():
    """Over many draws each of 4 batch classes is chosen about half the time, the pairs
    (6 of them) about equally often, and the two images of a call choose independently."""
    gen = torch.Generator().manual_seed(0)
    labels = torch.tensor([[[0, 1], [2, 255]], [[0, 1], [2, 255]]])
    pairs, same = {}, 0
    draws = 3000
    for _ in range(draws):
        masks = class_mix_masks(labels, gen, on_device=True, num_classes=3)
        chosen = [frozenset(_chosen_classes(labels[i], masks[i])) for i in range(2)]
        assert all(len(c) == 2 for c in chosen)  # ceil(4 / 2)
        pairs[chosen[0]] = pairs.get(chosen[0], 0) + 1
        same += chosen[0] == chosen[1]
    assert len(pairs) == 6
    assert all(abs(count / draws - 1 / 6) < 0.03 for count in pairs.values()), pairs
    assert abs(same / draws - 1 / 6) < 0.03  # independent draws agree 1 time in 6


def test_on_device_needs_num_classes_and_is_reproducible():
    with pytest.raises(ValueError, match='num_classes'):
        class_mix_masks(LABELS, torch.Generator().manual_seed(0), on_device=True)
    a = class_mix_masks(LABELS, torch.Generator().manual_seed(5), on_device=True, num_classes=3)
    b = class_mix_masks(LABELS, torch.Generator().manual_seed(5), on_device=True, num_classes=3)
    assert torch.equal(a, b)


@pytest.mark.parametrize('on_device', [False, True])
def test_host_sync_audit_of_the_class_choice(on_device):
    """On meta (CUDA's device rules), the reference's choice waits for the device (unique,
    then one index copy per image); the on-device choice never does."""
    from madm.utils.host_sync_audit import HostSyncAudit
    labels = LABELS.to('meta')
    with HostSyncAudit() as audit:
        masks = class_mix_masks(labels, torch.Generator().manual_seed(0), on_device=on_device,
                                num_classes=3)
    assert masks.shape == LABELS.shape and masks.device.type == 'meta'
    ops = [s.op for s in audit.syncs]
    assert ops == ([] if on_device else ['aten._unique2'] + ['aten._to_copy'] * 2)


@pytest.mark.parametrize('bad', [3, -1, 254])
def test_on_device_rejects_labels_outside_the_classes(bad):
    """A label of C would share the ignore slot and be pasted with 255: it raises instead
    (on a GPU as an asynchronous device-side assert)."""
    labels = LABELS.clone()
    labels[0, 0, 0] = bad
    with pytest.raises(RuntimeError, match=r'ClassMix labels must lie in \[0, 3\) or be 255'):
        class_mix_masks(labels, torch.Generator().manual_seed(0), on_device=True, num_classes=3)


def test_on_device_with_another_ignore_index_and_image_scope_uniformity():
    labels = torch.where(LABELS == 255, -1, LABELS)
    gen = torch.Generator().manual_seed(1)
    counts = {}
    for _ in range(1200):
        masks = class_mix_masks(labels, gen, ignore_index=-1, scope='image', on_device=True,
                                num_classes=3)
        assert masks[1].all()  # image 1's only class
        chosen = frozenset(_chosen_classes(labels[0], masks[0]))
        assert len(chosen) == 2 and chosen <= {0, 1, -1}
        counts[chosen] = counts.get(chosen, 0) + 1
    assert len(counts) == 3 and all(abs(c / 1200 - 1 / 3) < 0.05 for c in counts.values())
