"""UDASegDataPreProcessor: source/target branches and the plain path (method.md §1 step 2)."""
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.models.data_preprocessor import SegDataPreProcessor
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

# MADM feeds RGB images in [0, 1] (pixel_mean=0, pixel_std=255).
CFG = dict(mean=[0.0, 0.0, 0.0], std=[255.0, 255.0, 255.0], bgr_to_rgb=True, size=(4, 4))


def _sample(h: int, w: int, labelled: bool, seed: int) -> tuple[torch.Tensor, SegDataSample]:
    gen = torch.Generator().manual_seed(seed)
    img = torch.randint(0, 256, (3, h, w), generator=gen, dtype=torch.uint8)
    sample = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w)))
    if labelled:
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 3, (1, h, w), generator=gen))
    return img, sample


def _branch(labelled: bool, seed: int, h: int = 4, w: int = 4) -> dict:
    items = [_sample(h, w, labelled, seed + i) for i in range(2)]
    return dict(inputs=[i for i, _ in items], data_samples=[s for _, s in items])


def test_uda_batch_is_processed_per_branch():
    pre = MODELS.build(dict(type='UDASegDataPreProcessor', **CFG))
    source, target = _branch(True, 0, h=3, w=4), _branch(False, 10)
    src_img0 = source['inputs'][0].clone()
    out = pre(dict(source=source, target=target), training=True)
    assert set(out['inputs']) == {'source', 'target'} and set(out['data_samples']) == {'source', 'target'}
    assert out['inputs']['source'].shape == (2, 3, 4, 4)  # 3x4 padded to size (4, 4)
    assert out['inputs']['target'].shape == (2, 3, 4, 4)
    # BGR -> RGB and / 255: output channel 0 is input channel 2.
    torch.testing.assert_close(out['inputs']['source'][0, 0, :3], src_img0[2].float() / 255)
    assert out['inputs']['source'][0, :, 3].eq(0).all()  # pad_val 0 in the padded row
    gt = out['data_samples']['source'][0].gt_sem_seg.data
    assert gt.shape == (1, 4, 4) and gt[0, 3].eq(255).all()  # labels padded with 255
    assert len(out['data_samples']['target']) == 2
    assert 'gt_sem_seg' not in out['data_samples']['target'][0]
    assert 0.0 <= out['inputs']['target'].min() and out['inputs']['target'].max() <= 1.0


def test_plain_batch_behaves_like_seg_data_preprocessor():
    pre = MODELS.build(dict(type='UDASegDataPreProcessor', **CFG))
    ref = SegDataPreProcessor(**CFG)
    batch = _branch(True, 3)
    for training in (False, True):
        out = pre(dict(inputs=list(batch['inputs']), data_samples=list(batch['data_samples'])), training)
        expected = ref(dict(inputs=list(batch['inputs']), data_samples=list(batch['data_samples'])), training)
        assert torch.equal(out['inputs'], expected['inputs'])
        assert isinstance(out['data_samples'], list)


def test_training_uda_batch_needs_a_size():
    cfg = dict(CFG, size=None)
    pre = MODELS.build(dict(type='UDASegDataPreProcessor', **cfg))
    with pytest.raises(ValueError, match='size'):
        pre(dict(source=_branch(True, 0), target=_branch(False, 1)), training=True)
    # Not training: images are only stacked, no size needed.
    out = pre(dict(source=_branch(True, 0), target=_branch(False, 1)), training=False)
    assert out['inputs']['target'].shape == (2, 3, 4, 4)


def test_non_blocking_reaches_every_copy_and_keeps_the_values(monkeypatch):
    blocking = MODELS.build(dict(type='UDASegDataPreProcessor', **CFG))
    expected = blocking(dict(source=_branch(True, 0), target=_branch(False, 10)), training=True)
    flags = []
    to = torch.Tensor.to

    def spy(self, *args, **kwargs):
        flags.append(kwargs.get('non_blocking'))
        return to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, 'to', spy)
    pre = MODELS.build(dict(type='UDASegDataPreProcessor', non_blocking=True, **CFG))
    out = pre(dict(source=_branch(True, 0), target=_branch(False, 10)), training=True)
    # 2 images per branch and the 2 source labels; SegDataPreProcessor alone would pass False.
    assert len(flags) == 6 and all(flag is True for flag in flags)
    for branch in ('source', 'target'):
        assert torch.equal(out['inputs'][branch], expected['inputs'][branch])
    assert torch.equal(out['data_samples']['source'][0].gt_sem_seg.data,
                       expected['data_samples']['source'][0].gt_sem_seg.data)


def fake_pinning(monkeypatch) -> list[torch.Tensor]:
    """``Tensor.pin_memory`` without CUDA: a clone marked as pinned (the list of them)."""
    pinned_copies = []

    def pin_memory(self):
        copy = self.clone()
        pinned_copies.append(copy)
        return copy

    monkeypatch.setattr(torch.Tensor, 'pin_memory', pin_memory)
    monkeypatch.setattr(torch.Tensor, 'is_pinned',
                        lambda self: any(self is t for t in pinned_copies))
    return pinned_copies


def test_pinned_reaches_the_labels_inside_data_samples(monkeypatch):
    from madm.models.data_preprocessors.uda_data_preprocessor import pinned
    pinned_copies = fake_pinning(monkeypatch)
    img, sample = _sample(4, 4, True, 0)
    out = pinned(sample)
    label = out.gt_sem_seg.data
    assert any(label is t for t in pinned_copies) and torch.equal(label, sample.gt_sem_seg.data)
    assert out.metainfo == sample.metainfo and sample.gt_sem_seg.data is not label  # a new one
    image = pinned(img)
    assert image.is_pinned() and pinned(image) is image  # pinned once
    assert pinned('not a tensor') == 'not a tensor'


def test_non_blocking_copies_to_cuda_come_from_pinned_memory(monkeypatch):
    """DataLoader(pin_memory=True) pins the images; the preprocessor pins the labels too, so
    that no copy waits for the GPU. Checked with a pretend pinning and the ``meta`` device."""
    pre = MODELS.build(dict(type='UDASegDataPreProcessor', non_blocking=True, **CFG))
    pre.to('meta')
    assert not pre._pins_before_copy()  # only on CUDA
    pinned_copies = fake_pinning(monkeypatch)
    copied = []
    to = torch.Tensor.to

    def spy(self, *args, **kwargs):
        copied.append(self.is_pinned())
        return to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, 'to', spy)
    monkeypatch.setattr(type(pre), '_pins_before_copy', lambda self: True)
    source, target = _branch(True, 0), _branch(False, 10)
    source['inputs'] = [img.pin_memory() for img in source['inputs']]  # as the loader does
    images_pinned_by_the_loader = len(pinned_copies)
    pre(dict(source=source, target=target), training=True)
    assert copied == [True] * 6  # 4 images, 2 labels
    # the preprocessor pinned the target's images and the source's labels, not the rest again
    assert len(pinned_copies) - images_pinned_by_the_loader == 4


@pytest.mark.parametrize('channels', [3, 1])
def test_flip_on_the_device_gives_the_parents_values(channels):
    pre = MODELS.build(dict(type='UDASegDataPreProcessor', **CFG))
    ref = SegDataPreProcessor(**CFG)
    gen = torch.Generator().manual_seed(0)
    imgs = [torch.randint(0, 256, (channels, 4, 4), generator=gen, dtype=torch.uint8)
            for _ in range(2)]
    samples = [_sample(4, 4, True, i)[1] for i in range(2)]
    for training in (False, True):
        out = pre(dict(inputs=list(imgs), data_samples=list(samples)), training)
        expected = ref(dict(inputs=list(imgs), data_samples=list(samples)), training)
        assert torch.equal(out['inputs'], expected['inputs'])
    uda = pre(dict(source=dict(inputs=list(imgs), data_samples=list(samples)),
                   target=dict(inputs=list(imgs), data_samples=list(samples))), training=True)
    expected = ref(dict(inputs=list(imgs), data_samples=list(samples)), True)['inputs']
    assert torch.equal(uda['inputs']['source'], expected)
    assert torch.equal(uda['inputs']['target'], expected)


@pytest.mark.parametrize('non_blocking', [False, True])
def test_a_uda_batch_on_meta_waits_only_for_blocking_copies(non_blocking):
    """The host-sync audit: no list-index flip; the 6 copies wait unless non-blocking."""
    from madm.utils.host_sync_audit import HostSyncAudit
    pre = MODELS.build(dict(type='UDASegDataPreProcessor', non_blocking=non_blocking, **CFG))
    pre.to('meta')
    with HostSyncAudit() as audit:
        out = pre(dict(source=_branch(True, 0), target=_branch(False, 10)), training=True)
    assert out['inputs']['source'].device.type == 'meta'
    assert [s.reason for s in audit.syncs] == (
        [] if non_blocking else ['a blocking copy from the host to the device'] * 6)
