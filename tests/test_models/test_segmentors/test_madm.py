"""Contract tests of the MADM segmentor on the tiny SD preset (mmseg-style: loss, train_step, val, predict)."""
import copy

import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapper
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

from madm.models.uda import dplg_timestep

NUM_CLASSES = 3
PALETTE = [[255, 0, 0], [0, 255, 0], [0, 0, 255]]
SIZE = 64


def madm_cfg(**overrides):
    cfg = dict(
        type='MADM',
        palette=PALETTE,
        data_preprocessor=dict(type='UDASegDataPreProcessor', mean=[0, 0, 0], std=[255, 255, 255],
                               bgr_to_rgb=False, size=(SIZE, SIZE), seg_pad_val=255),
        backbone=dict(type='StableDiffusionBackbone', preset='tiny'),
        neck=dict(type='BottleneckProjection', in_channels=[3, 32, 64, 64],
                  out_channels=[16, 32, 32, 32], bottleneck_channels=16,
                  norm_cfg=dict(type='GN', num_groups=8)),
        decode_head=dict(type='DAFormerHead', in_channels=[16, 32, 32, 32], in_index=[0, 1, 2, 3],
                         channels=32, embed_dims=16, num_classes=NUM_CLASSES, dropout_ratio=0.1,
                         norm_cfg=dict(type='BN', requires_grad=True), align_corners=False,
                         loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0)),
        dplg=dict(start_timestep_range=(60, 61), end_iter=5000),
        lplr=dict(source_weight=1.0, mixed_weight=1.0),
        test_cfg=dict(mode='whole'))
    cfg.update(overrides)
    return cfg


def build(**overrides):
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(ConfigDict(madm_cfg(**overrides)))
    model.init_weights()
    return model


def fake_batch(n=2, seed=0):
    g = torch.Generator().manual_seed(seed)

    def samples(with_label):
        out = []
        for _ in range(n):
            s = SegDataSample(metainfo=dict(img_shape=(SIZE, SIZE), ori_shape=(SIZE, SIZE),
                                            pad_shape=(SIZE, SIZE)))
            if with_label:
                label = torch.randint(0, NUM_CLASSES, (1, SIZE, SIZE), generator=g)
                label[:, :4] = 255
                s.gt_sem_seg = PixelData(data=label)
            out.append(s)
        return out

    def images():
        return [torch.randint(0, 256, (3, SIZE, SIZE), generator=g, dtype=torch.uint8) for _ in range(n)]

    return dict(source=dict(inputs=images(), data_samples=samples(True)),
                target=dict(inputs=images(), data_samples=samples(False)))


def set_iter(i):
    MessageHub.get_current_instance().update_info('iter', i)


@pytest.fixture(autouse=True)
def _reset_iter():
    set_iter(0)
    yield
    set_iter(0)


def test_loss_keys_and_log_values():
    model = build()
    set_iter(1000)
    data = model.data_preprocessor(fake_batch(), training=True)
    losses = model(**data, mode='loss')
    assert {'src.loss_ce', 'src.acc_seg', 'src.loss_lplr', 'mix.loss_ce', 'mix.loss_lplr',
            'dplg.timestep', 'tgt.pseudo_weight', 'tgt.confident_share'} <= set(losses)
    # Log-only values must not contain "loss" (mmengine back-propagates those).
    assert all('loss' not in k for k in ('dplg.timestep', 'tgt.pseudo_weight', 'tgt.confident_share'))
    # k0 in {60, 61}, i = 1000, T_end = 5000 -> int(60 * 0.8) = int(61 * 0.8) = 48.
    assert losses['dplg.timestep'].item() == 48 == dplg_timestep(1000, 60, 5000)
    for key in ('src.loss_ce', 'mix.loss_ce', 'src.loss_lplr', 'mix.loss_lplr'):
        assert torch.isfinite(losses[key]) and losses[key].requires_grad


def test_ablations_drop_terms_and_dplg_off_gives_timestep_zero():
    model = build(dplg=None, lplr=dict(source_weight=20.0, mixed_weight=0.0))
    set_iter(10)
    losses = model(**model.data_preprocessor(fake_batch(), training=True), mode='loss')
    assert 'src.loss_lplr' in losses and 'mix.loss_lplr' not in losses
    assert losses['dplg.timestep'].item() == 0
    model = build(lplr=None)
    losses = model(**model.data_preprocessor(fake_batch(), training=True), mode='loss')
    assert not any('lplr' in k for k in losses)


def test_teacher_shares_unet_and_follows_ema():
    model = build()
    assert set(model.teacher.keys()) == {'decode_head', 'neck', 'conditioning'}
    assert not any(p.requires_grad for p in model.teacher.parameters())
    optim = OptimWrapper(torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1))

    set_iter(0)  # alpha_0 = 0: the teacher becomes a copy of the student
    model.train_step(fake_batch(seed=1), optim)
    student_after_0 = copy.deepcopy(model.decode_head.conv_seg.weight.detach())
    # The update ran before the step, so the teacher holds the *pre-step* student.
    assert not torch.equal(model.teacher['decode_head'].conv_seg.weight, student_after_0)
    teacher_0 = model.teacher['decode_head'].conv_seg.weight.detach().clone()

    set_iter(1)  # alpha_1 = min(1 - 1/2, 0.999) = 0.5
    student_buffers = [b.clone() for b in model.decode_head.buffers()]
    model.train_step(fake_batch(seed=2), optim)
    expected = 0.5 * teacher_0 + 0.5 * student_after_0
    assert torch.allclose(model.teacher['decode_head'].conv_seg.weight, expected, atol=1e-6)
    # BN running statistics are copied from the student at the update (eval-mode teacher);
    # the student's forward passes of the step then move its own statistics on.
    for t_buf, s_buf in zip(model.teacher['decode_head'].buffers(), student_buffers):
        assert torch.equal(t_buf, s_buf)
    assert not model.teacher.training and model.decode_head.training


def test_full_teacher_scope_has_its_own_backbone():
    model = build(teacher_scope='full')
    assert 'backbone' in model.teacher
    assert model.teacher['backbone'].unet is not model.backbone.unet


def test_predict_and_val_step_use_the_student():
    model = build()
    model.eval()
    batch = fake_batch(n=1)['target']
    batch['data_samples'][0].gt_sem_seg = PixelData(data=torch.zeros(1, SIZE, SIZE, dtype=torch.long))
    out = model.val_step(batch)
    assert out[0].pred_sem_seg.data.shape == (1, SIZE, SIZE)
    assert out[0].seg_logits.data.shape == (NUM_CLASSES, SIZE, SIZE)


def test_generator_state_is_part_of_the_state_dict():
    model = build()
    model.generator.manual_seed(123)
    state = model.state_dict()
    assert any(k.endswith('_extra_state') for k in state)
    other = build()
    other.load_state_dict(state)
    assert torch.equal(torch.randint(0, 10**6, (4,), generator=other.generator),
                       torch.randint(0, 10**6, (4,), generator=model.generator))


def test_generator_follows_the_run_seed_and_the_rank(monkeypatch):
    import madm.utils.runtime as runtime
    # Built by a runner, the model sees torch seeded from randomness.seed.
    assert build().generator.initial_seed() == 0
    init_default_scope('mmseg')
    torch.manual_seed(7)
    assert MODELS.build(ConfigDict(madm_cfg())).generator.initial_seed() == 7
    monkeypatch.setattr(runtime, 'get_rank', lambda: 1)
    torch.manual_seed(7)
    rank1 = MODELS.build(ConfigDict(madm_cfg())).generator.initial_seed()
    # Not seed 8 on rank 0: a multi-process seed sweep would share streams.
    assert rank1 == (7 + 0x9E3779B97F4A7C15) % 2**64
    # An explicit seed wins.
    assert MODELS.build(ConfigDict(madm_cfg(seed=3))).generator.initial_seed() == 3


def test_resumed_ranks_branch_off_rank_zeros_stream(monkeypatch):
    import madm.models.segmentors.uda_encoder_decoder as module
    state = build().state_dict()

    def draws_after_loading(rank):
        monkeypatch.setattr(module, 'get_rank', lambda: rank)
        model = build(seed=99)
        model.load_state_dict(state)
        return torch.randint(0, 10**9, (4,), generator=model.generator)

    rank0, rank1, rank2 = draws_after_loading(0), draws_after_loading(1), draws_after_loading(2)
    # Rank 0 continues the saved stream exactly, the others each a stream of their own.
    assert torch.equal(rank0, torch.randint(0, 10**9, (4,), generator=build().generator))
    assert not torch.equal(rank0, rank1) and not torch.equal(rank1, rank2)
    assert torch.equal(rank1, draws_after_loading(1))


def test_rejects_inputs_outside_unit_range():
    with pytest.raises(ValueError, match='mean=\\[0, 0, 0\\]'):
        build(data_preprocessor=dict(type='UDASegDataPreProcessor', mean=[123.7, 116.3, 103.5],
                                     std=[58.4, 57.1, 57.4], size=(SIZE, SIZE)))


def test_class_balanced_pseudo_labels_keep_the_share_per_class():
    model = build(pseudo_weight_mode='class_balanced', pseudo_class_keep_share=0.25,
                  pseudo_threshold=0.9)
    data = model.data_preprocessor(fake_batch(), training=True)
    target = data['inputs']['target']
    label, weight, logs = model.generate_pseudo_labels(target, cur_iter=10)
    counts = torch.bincount(label.reshape(-1), minlength=NUM_CLASSES)
    kept = torch.bincount(label.reshape(-1), weights=weight.reshape(-1), minlength=NUM_CLASSES)
    assert torch.equal(kept, torch.ceil(0.25 * counts.double()).to(kept.dtype))
    assert logs['tgt.pseudo_weight'] == weight.mean()
    # the confident share still reports the threshold, which class_balanced does not use
    assert 0.0 <= float(logs['tgt.confident_share']) <= 1.0
    losses = model(**data, mode='loss')
    assert torch.isfinite(losses['mix.loss_ce'])
