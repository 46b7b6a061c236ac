"""Tests for DAFormerHead (method.md §3) and a tiny SD segmentor built from madm parts."""
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmengine.optim import OptimWrapper
from mmengine.registry import DefaultScope
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

IN_CHANNELS = [8, 16, 16, 16]


def _feats(n=2, size=32):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(n, c, size // s, size // s, generator=g)
            for c, s in zip(IN_CHANNELS, (1, 8, 16, 32))]


def _head(**kw):
    cfg = dict(type='DAFormerHead', in_channels=IN_CHANNELS, channels=16, embed_dims=8,
               num_classes=5)
    cfg.update(kw)
    return MODELS.build(cfg)


def test_reference_fusion_at_first_input_size():
    head = _head()
    assert head.fusion_size(_feats()) == (32, 32)
    assert head(_feats()).shape == (2, 5, 32, 32)
    assert [b.__class__.__name__ for b in head.aspp] == [
        'ConvModule', 'DepthwiseSeparableConvModule', 'DepthwiseSeparableConvModule',
        'DepthwiseSeparableConvModule']
    assert head.aspp[0].conv.in_channels == 4 * 8  # concat of 4 embeddings
    assert head.aspp[2].depthwise_conv.conv.dilation == (12, 12)
    assert head.fuse_bottleneck.conv.in_channels == 4 * 16
    assert head.fuse_bottleneck.conv.kernel_size == (3, 3)


def test_fusion_stride_and_non_square():
    head = _head(fusion_stride=4, in_strides=[1, 8, 16, 32])
    feats = [torch.randn(1, c, 64 // s, 128 // s) for c, s in zip(IN_CHANNELS, (1, 8, 16, 32))]
    assert head.fusion_size(feats) == (16, 32)  # 64 * 1 / 4, 128 * 1 / 4
    assert head(feats).shape == (1, 5, 16, 32)
    head8 = _head(fusion_stride=8, in_strides=[8, 16, 32], in_channels=[16, 16, 16],
                  in_index=[1, 2, 3])
    assert head8(feats).shape == (1, 5, 8, 16)
    with pytest.raises(ValueError, match='in_strides'):
        _head(fusion_stride=4)


def test_resize_before_embedding_equals_reference_order():
    head = _head(fusion_stride=4, in_strides=[1, 8, 16, 32]).eval()
    x = _feats()[0]
    ours = head._embed(head.embed_layers[0], F.interpolate(x, size=(8, 8), mode='bilinear'))
    reference = F.interpolate(head._embed(head.embed_layers[0], x), size=(8, 8), mode='bilinear')
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
    # The embedding is a per-pixel linear layer, as a 1x1 conv with the same weights.
    conv = F.conv2d(x, head.embed_layers[0].weight[..., None, None], head.embed_layers[0].bias)
    torch.testing.assert_close(head._embed(head.embed_layers[0], x), conv)


def test_init_follows_reference_unless_configured():
    torch.manual_seed(0)
    head = _head(channels=256, num_classes=11)
    head.init_weights()
    # PyTorch default (kaiming uniform, a=sqrt(5)): std = 1 / sqrt(3 * 256) = 0.036.
    assert abs(head.conv_seg.weight.std().item() - 0.036) < 0.005
    head = _head(channels=256, num_classes=11,
                 init_cfg=dict(type='Normal', std=0.01, override=dict(name='conv_seg')))
    head.init_weights()
    assert abs(head.conv_seg.weight.std().item() - 0.01) < 0.002


def _segmentor():
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmseg'):  # nested types resolve in mmseg
        model = _build_segmentor()
    model.init_weights()
    return model


def _build_segmentor():
    return MODELS.build(dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[0, 0, 0], std=[255, 255, 255],
                               bgr_to_rgb=False, size_divisor=64, pad_val=0, seg_pad_val=255),
        backbone=dict(type='StableDiffusionBackbone', preset='tiny'),
        neck=dict(type='BottleneckProjection', in_channels=[3, 32, 64, 64],
                  out_channels=[16, 32, 32, 32], bottleneck_channels=16,
                  norm_cfg=dict(type='GN', num_groups=8)),
        decode_head=dict(type='DAFormerHead', in_channels=[16, 32, 32, 32], channels=16,
                         embed_dims=16, num_classes=3, fusion_stride=4,
                         in_strides=[1, 8, 16, 32]),
        train_cfg=ConfigDict(), test_cfg=ConfigDict(mode='whole')))


def _data(n=2):
    g = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for _ in range(n):
        inputs.append(torch.randint(0, 256, (3, 64, 64), generator=g, dtype=torch.uint8))
        label = torch.zeros(1, 64, 64, dtype=torch.long)
        label[:, :, 32:] = 1
        label[:, 32:] = 2
        sample = SegDataSample(gt_sem_seg=PixelData(data=label))
        sample.set_metainfo(dict(img_shape=(64, 64), ori_shape=(64, 64), pad_shape=(64, 64)))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def test_trains_in_mmseg_encoder_decoder():
    model = _segmentor()
    optim = OptimWrapper(torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-3))
    data = _data()
    losses = [model.train_step(data, optim)['decode.loss_ce'].item() for _ in range(3)]
    assert losses[-1] < losses[0], losses
    model.eval()
    with torch.no_grad():
        preds = model.val_step(_data(1))
    assert preds[0].pred_sem_seg.data.shape == (1, 64, 64)
    assert preds[0].seg_logits.data.shape == (3, 64, 64)


def _saved_bytes(fn) -> tuple:
    """``fn()`` and the bytes of the tensors autograd kept for its backward."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, total


def test_with_cp_same_result_grads_and_bn_stats_with_less_saved():
    torch.manual_seed(0)
    plain = _head(dropout_ratio=0.0).train()
    with_cp = _head(dropout_ratio=0.0, with_cp=True).train()
    with_cp.load_state_dict(plain.state_dict())
    feats = [f.requires_grad_(True) for f in _feats()]
    feats_cp = [f.detach().clone().requires_grad_(True) for f in feats]
    out, saved = _saved_bytes(lambda: plain(feats))
    out_cp, saved_cp = _saved_bytes(lambda: with_cp(feats_cp))
    torch.testing.assert_close(out_cp, out)
    assert saved_cp < saved / 4, (saved_cp, saved)
    out.square().mean().backward()
    out_cp.square().mean().backward()
    for (name, p), p_cp in zip(plain.named_parameters(), with_cp.parameters()):
        torch.testing.assert_close(p_cp.grad, p.grad, msg=name)
    for f, f_cp in zip(feats, feats_cp):
        torch.testing.assert_close(f_cp.grad, f.grad)
    # BN running statistics moved once, not twice (the recomputation leaves them alone).
    for (name, b), b_cp in zip(plain.named_buffers(), with_cp.buffers()):
        torch.testing.assert_close(b_cp, b, msg=name)
    assert with_cp.aspp[0].bn.momentum == plain.aspp[0].bn.momentum
    # Without grad (the EMA teacher) nothing is checkpointed.
    with torch.no_grad():
        torch.testing.assert_close(with_cp(feats_cp), plain(feats))


def test_aspp_gets_a_contiguous_nchw_tensor():
    """The embeddings' transposed views are channels-last; cuDNN's NHWC dilated depthwise
    kernels took 13x as long on an H100, so the head hands the ASPP plain NCHW."""
    head = _head()
    seen = []
    head.aspp[1].register_forward_pre_hook(lambda m, args: seen.append(args[0].is_contiguous()))
    head(_feats())
    assert seen == [True]


@pytest.mark.parametrize('kw', [dict(), dict(fusion_stride=4, in_strides=[1, 8, 16, 32])])
def test_matmul_resize_impl_matches_interpolate(kw):
    torch.manual_seed(0)
    reference = _head(dropout_ratio=0.0, **kw).train()
    matmul = _head(dropout_ratio=0.0, resize_impl='matmul', **kw).train()
    matmul.load_state_dict(reference.state_dict())
    out_ref, out = reference(_feats()), matmul(_feats())
    torch.testing.assert_close(out, out_ref, atol=1e-5, rtol=1e-4)
    out_ref.square().mean().backward()
    out.square().mean().backward()
    for (name, p_ref), p in zip(reference.named_parameters(), matmul.parameters()):
        torch.testing.assert_close(p.grad, p_ref.grad, atol=1e-6, rtol=1e-4, msg=name)
    with pytest.raises(ValueError, match='resize_impl'):
        _head(resize_impl='nearest')


@pytest.mark.parametrize('two_losses', [False, True])
def test_loss_by_feat_equals_mmseg_and_waits_for_no_device(two_losses):
    """Same losses and accuracy as BaseDecodeHead.loss_by_feat (which it replaces for the
    accuracy), also with two summed loss terms, and no host sync on meta."""
    from mmseg.models.decode_heads.decode_head import BaseDecodeHead

    from madm.utils.host_sync_audit import HostSyncAudit
    loss_decode = dict(type='CrossEntropyLoss', loss_weight=1.0)
    if two_losses:
        loss_decode = [loss_decode, dict(type='CrossEntropyLoss', loss_weight=0.5)]
    head = _head(loss_decode=loss_decode)
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 5, 8, 8, generator=g)
    samples = []
    for _ in range(2):
        label = torch.randint(0, 5, (1, 32, 32), generator=g)
        label[:, :4] = 255
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(data=label)
        samples.append(sample)
    ours = head.loss_by_feat(logits, samples)
    theirs = BaseDecodeHead.loss_by_feat(head, logits, samples)
    assert set(ours) == set(theirs) == {'loss_ce', 'acc_seg'}
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key])
    meta_samples = []
    for sample in samples:
        meta = SegDataSample()
        meta.gt_sem_seg = PixelData(data=sample.gt_sem_seg.data.to('meta'))
        meta_samples.append(meta)
    head.to('meta')
    logits = logits.to('meta')
    with HostSyncAudit() as audit:
        head.loss_by_feat(logits, meta_samples)
    assert audit.syncs == []
