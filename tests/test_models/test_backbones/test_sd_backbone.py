"""Tests for StableDiffusionBackbone on the tiny preset (method.md §2)."""
import os
import os.path as osp
import shutil

import pytest
import torch
import torch.nn.functional as F

from madm.models.backbones import StableDiffusionBackbone, save_preset_as_pretrained
from madm.models.backbones.sd_backbone import empty_prompt_ids
from madm.models.utils import AutocastGroupNorm
from madm.utils import MissingDataError

SEED = 0


@pytest.fixture(scope='module')
def backbone():
    torch.manual_seed(SEED)
    return StableDiffusionBackbone(preset='tiny').eval()


@pytest.fixture(scope='module')
def sd_folder(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('tiny_sd'))
    save_preset_as_pretrained('tiny', root, seed=SEED)
    return root


def _img(h=64, w=64, n=2, seed=1):
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _reference_pass(bb, img, t, time_offset=None):
    """The backbone path written out with plain diffusers calls and our own hooks."""
    sf = bb.vae.config.scaling_factor
    with torch.no_grad():
        z = bb.vae.encode(img * 2 - 1).latent_dist.mean * sf
    eps = torch.randn(1, 4, 64, 64, generator=torch.Generator().manual_seed(42))
    eps = F.interpolate(eps, size=z.shape[-2:], mode='bicubic', align_corners=False)
    # The noising formula itself is checked by hand in test_noising_by_hand.
    z_t = bb.scheduler.add_noise(z, eps.expand_as(z), torch.full((img.shape[0], ), t))
    taps, handles = {}, []
    for b in (1, 2, 3):
        module = bb.unet.up_blocks[b].attentions[2]
        handles.append(module.register_forward_hook(
            lambda m, a, o, b=b: taps.__setitem__(b, o[0])))
    if time_offset is not None:
        handles.append(bb.unet.time_embedding.register_forward_hook(
            lambda m, a, o: o + time_offset))
    ctx = bb.conditioning.context(img.shape[0])
    out = bb.unet(z_t, torch.full((img.shape[0], ), t), encoder_hidden_states=ctx).sample
    for h in handles:
        h.remove()
    with torch.no_grad():
        decoded = bb.vae.decode(out / sf).sample
    return (decoded, taps[3], taps[2], taps[1]), out


@pytest.mark.parametrize('size', [(64, 64), (64, 128)])
def test_output_shapes_and_strides(backbone, size):
    h, w = size
    assert backbone.out_channels == (3, 32, 64, 64)
    assert backbone.out_strides == (1, 8, 16, 32)
    assert backbone.tap_names == ('up_blocks.3.attentions.2', 'up_blocks.2.attentions.2',
                                  'up_blocks.1.attentions.2')
    with torch.no_grad():
        out = backbone.extract(_img(h, w))
    assert [tuple(f.shape) for f in out.features] == [
        (2, c, h // s, w // s) for c, s in zip(backbone.out_channels, backbone.out_strides)]
    assert out.unet_output.shape == (2, 4, h // 8, w // 8)
    assert out.decoded is out.features[0]
    with torch.no_grad():
        assert [f.shape for f in backbone(_img(h, w))] == [f.shape for f in out.features]


def test_matches_hand_written_pipeline_and_time_offset_is_zero_at_init(backbone):
    img = _img()
    assert torch.equal(backbone.conditioning.time_offset(),
                       torch.zeros_like(backbone.conditioning.time_offset()))
    with torch.no_grad():
        out = backbone.extract(img, timestep=0)
        ref_feats, ref_out = _reference_pass(backbone, img, t=0)  # no time hook at all
    # Not bit-exact: CPU kernels may pick other summation orders for other buffers.
    for f, r in zip(out.features, ref_feats):
        torch.testing.assert_close(f, r, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.unet_output, ref_out, atol=1e-4, rtol=1e-4)


def test_time_offset_and_conditioning_argument(backbone):
    img = _img(n=1)
    cond = type(backbone.conditioning)(backbone.conditioning.empty_prompt_embedding,
                                       backbone.conditioning.time_embed.shape[1])
    with torch.no_grad():
        cond.load_state_dict(backbone.conditioning.state_dict())
        cond.alpha_time.fill_(1.0)
        cond.time_embed.fill_(0.5)
        out = backbone.extract(img, timestep=25, conditioning=cond)
        plain = backbone.extract(img, timestep=25)
        ref_feats, _ = _reference_pass(backbone, img, t=25,
                                       time_offset=torch.tanh(torch.tensor(1.0)) * 0.5)
    torch.testing.assert_close(out.features[1], ref_feats[1])
    assert not torch.allclose(out.features[1], plain.features[1])


def test_noising_by_hand(backbone):
    z = torch.randn(2, 4, 8, 16, generator=torch.Generator().manual_seed(3))
    eps = torch.randn(1, 4, 64, 64, generator=torch.Generator().manual_seed(42))
    eps = F.interpolate(eps, size=(8, 16), mode='bicubic', align_corners=False)
    # sqrt(ᾱ_t), sqrt(1-ᾱ_t) of SD-1.x's schedule (method.md §2.3 table).
    for t, a, b in [(0, 0.99957, 0.02917), (50, 0.97553, 0.22011)]:
        noisy = backbone.add_noise(z, torch.full((2, ), t))
        torch.testing.assert_close(noisy, a * z + b * eps, atol=2e-4, rtol=0)
    noisy = backbone.add_noise(z, torch.tensor([0, 50]))
    torch.testing.assert_close(noisy[1], 0.97553 * z[1] + 0.22011 * eps[0], atol=2e-4, rtol=0)


def test_per_image_timesteps(backbone):
    img = _img()
    with torch.no_grad():
        mixed = backbone.extract(img, timestep=torch.tensor([0, 40])).unet_output
        t0 = backbone.extract(img[:1], timestep=0).unet_output
        t40 = backbone.extract(img[1:], timestep=40).unet_output
    torch.testing.assert_close(mixed, torch.cat([t0, t40]), atol=1e-5, rtol=1e-4)


def test_bad_input_size_and_timestep(backbone):
    with pytest.raises(ValueError, match='multiples of 64'):
        backbone.extract(_img(64, 96))
    with pytest.raises(ValueError, match=r'\[0, 999\]'):
        backbone.extract(_img(), timestep=1000)


def test_unet_output_has_grad_and_decoded_does_not(backbone):
    out = backbone.extract(_img(n=1))
    assert out.unet_output.requires_grad
    assert not out.decoded.requires_grad
    assert all(f.requires_grad for f in out.features[1:])


def test_full_policy_freezes_modules_after_last_tap(backbone):
    unet = backbone.unet
    assert not any(p.requires_grad for p in unet.conv_out.parameters())
    assert not any(p.requires_grad for p in unet.conv_norm_out.parameters())
    assert all(p.requires_grad for p in unet.up_blocks[3].resnets.parameters())
    assert all(p.requires_grad for p in unet.up_blocks[3].attentions.parameters())
    assert all(p.requires_grad for p in unet.down_blocks.parameters())
    assert not any(p.requires_grad for p in backbone.vae.parameters())
    assert all(p.requires_grad for p in backbone.conditioning.parameters())


def test_freezing_matches_gradient_reachability():
    """Structural freezing equals the reference's rule: no gradient from the last tap."""
    torch.manual_seed(SEED)
    bb = StableDiffusionBackbone(preset='tiny', tap_layers=(7, 3), with_decoded_output=False)
    assert bb.tap_names == ('up_blocks.2.attentions.1', 'up_blocks.1.attentions.0')
    assert bb.out_strides == (16, 32)
    bb.unet.requires_grad_(True)
    bb.extract(_img(n=1)).features[0].sum().backward()
    reached = {n for n, p in bb.unet.named_parameters() if p.grad is not None}
    frozen = {n for n, p in bb.unet.named_parameters() if any(p is q for m in
              bb.modules_after_last_tap() for q in m.parameters())}
    assert reached == set(n for n, _ in bb.unet.named_parameters()) - frozen
    assert 'up_blocks.2.resnets.2.conv1.weight' in frozen
    assert 'up_blocks.2.upsamplers.0.conv.weight' in frozen
    assert 'up_blocks.2.attentions.1.proj_out.weight' not in frozen


def test_frozen_and_lora_policies():
    torch.manual_seed(SEED)
    bb = StableDiffusionBackbone(preset='tiny', trainable='frozen')
    assert not any(p.requires_grad for p in bb.unet.parameters())
    assert all(p.requires_grad for p in bb.conditioning.parameters())
    try:
        import peft  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match='pip install peft'):
            StableDiffusionBackbone(preset='tiny', trainable='lora')
    else:
        bb = StableDiffusionBackbone(preset='tiny', trainable='lora', lora_rank=2)
        names = [n for n, p in bb.unet.named_parameters() if p.requires_grad]
        assert names and all('lora' in n for n in names)


def test_vae_stays_in_eval_mode(backbone):
    backbone.train()
    try:
        assert backbone.unet.training and not backbone.vae.training
    finally:
        backbone.eval()


def test_speed_switches_keep_outputs(backbone):
    torch.manual_seed(SEED)
    bb = StableDiffusionBackbone(preset='tiny', attention='math', gradient_checkpointing=True,
                                 channels_last=True).train()
    img = _img(n=1)
    out = bb.extract(img)
    with torch.no_grad():
        ref = backbone.extract(img)
    for f, r in zip(out.features, ref.features):
        torch.testing.assert_close(f, r, atol=1e-4, rtol=1e-4)
    out.features[1].sum().backward()
    assert bb.unet.conv_in.weight.grad is not None


def test_bf16_vae(backbone):
    torch.manual_seed(SEED)
    bb = StableDiffusionBackbone(preset='tiny', vae_dtype='bfloat16')
    assert next(bb.vae.parameters()).dtype == torch.bfloat16
    img = _img(n=1) * 2 - 1
    z = bb.encode_latent(img)
    assert z.dtype == torch.float32
    torch.testing.assert_close(z, backbone.encode_latent(img), atol=0.05, rtol=0.05)
    assert bb.decode_latent(z).dtype == torch.float32


def test_group_norm_in_autocast_dtype(backbone):
    torch.manual_seed(SEED)
    bb = StableDiffusionBackbone(preset='tiny', group_norm_precision='autocast').eval()
    norms = [m for m in bb.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and all(type(m) is AutocastGroupNorm for m in norms)
    assert any(type(m) is AutocastGroupNorm for m in bb.vae.modules())
    assert bb.state_dict().keys() == backbone.state_dict().keys()
    img = _img(n=1)
    with torch.no_grad():
        ref = backbone.extract(img)
        out = bb.extract(img)  # no autocast: exactly the float32 path
        for f, r in zip(out.features, ref.features):
            assert torch.equal(f, r)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            mixed = bb.extract(img)
    # bf16 through UNet and VAE: relative errors of 3-8 % here (the same as with float32
    # norms, since CPU autocast has no GroupNorm rule; the CUDA path is checked by
    # tools/benchmark.py --check-fp32).
    for f, r in zip(mixed.features, ref.features):
        assert (f.float() - r).norm() / r.norm() < 0.15
    with pytest.raises(ValueError, match='group_norm_precision'):
        StableDiffusionBackbone(preset='tiny', group_norm_precision='bf16')


@pytest.mark.slow
def test_unet_compiles_to_one_graph_per_grad_mode():
    """torch.compile of the UNet (issue 8) traces the per-call hooks without a graph break and
    reuses its graphs across timesteps, conditionings and autocast-dtype norms."""
    import copy

    from torch._dynamo.utils import counters
    torch.manual_seed(SEED)
    bb = StableDiffusionBackbone(preset='tiny', group_norm_precision='autocast').train()
    teacher_conditioning = copy.deepcopy(bb.conditioning)
    torch._dynamo.reset()
    counters.clear()
    bb.unet.compile(dynamic=False, backend='eager')
    img = _img(n=2)
    try:
        for step in range(2):
            with torch.autocast('cpu', dtype=torch.bfloat16):
                student = bb.extract(img)
                with torch.no_grad():
                    bb.extract(img, torch.full((2, ), 100 + step),
                               conditioning=teacher_conditioning)
            student.features[1].float().sum().backward()
        assert not counters['graph_break']
        assert counters['stats']['unique_graphs'] == 2  # with and without grad
    finally:
        torch._dynamo.reset()


def test_pretrained_round_trip(backbone, sd_folder):
    loaded = StableDiffusionBackbone(pretrained=sd_folder).eval()
    assert loaded.scaling_factor == pytest.approx(0.18215)
    for name, tensor in backbone.unet.state_dict().items():
        assert torch.equal(tensor, loaded.unet.state_dict()[name]), name
    # Same empty-prompt embedding through the real tokenizer files and mmseg's BPE.
    torch.testing.assert_close(loaded.conditioning.empty_prompt_embedding,
                               backbone.conditioning.empty_prompt_embedding)
    loaded.conditioning.load_state_dict(backbone.conditioning.state_dict())
    img = _img()
    with torch.no_grad():
        a, b = backbone.extract(img, timestep=10), loaded.extract(img, timestep=10)
    for f, g in zip(a.features, b.features):
        torch.testing.assert_close(f, g, atol=1e-4, rtol=1e-4)


def test_empty_prompt_ids_match_sd_tokenizer(sd_folder):
    from transformers import CLIPTokenizer
    tok = CLIPTokenizer.from_pretrained(sd_folder, subfolder='tokenizer', local_files_only=True)
    ids = tok([''], padding='max_length', max_length=77, return_tensors='pt').input_ids
    assert torch.equal(empty_prompt_ids(77), ids)


def test_missing_folder_and_files(sd_folder, tmp_path):
    with pytest.raises(MissingDataError, match='hf download'):
        StableDiffusionBackbone(pretrained=str(tmp_path / 'nowhere'))
    broken = str(tmp_path / 'sd')
    shutil.copytree(sd_folder, broken)
    os.remove(osp.join(broken, 'unet', 'diffusion_pytorch_model.safetensors'))
    os.remove(osp.join(broken, 'tokenizer', 'merges.txt'))
    with pytest.raises(MissingDataError) as info:
        StableDiffusionBackbone(pretrained=broken)
    msg = str(info.value)
    assert 'unet/diffusion_pytorch_model.safetensors' in msg and 'tokenizer/merges.txt' in msg
    assert 'vae/diffusion_pytorch_model.safetensors' not in msg
    # Only pickled weights: the error says how to convert.
    with open(osp.join(broken, 'unet', 'diffusion_pytorch_model.bin'), 'wb') as f:
        f.write(b'')
    with pytest.raises(MissingDataError, match='save_pretrained') as info:
        StableDiffusionBackbone(pretrained=broken)
    assert 'unet/diffusion_pytorch_model.safetensors' in str(info.value)
    os.remove(osp.join(broken, 'unet', 'diffusion_pytorch_model.bin'))
    shutil.copy(osp.join(sd_folder, 'unet', 'diffusion_pytorch_model.safetensors'),
                osp.join(broken, 'unet'))
    os.remove(osp.join(broken, 'text_encoder', 'model.safetensors'))
    with open(osp.join(broken, 'text_encoder', 'pytorch_model.bin'), 'wb') as f:
        f.write(b'')
    with pytest.raises(MissingDataError, match='from transformers import CLIPTextModel'):
        StableDiffusionBackbone(pretrained=broken)


def test_exactly_one_source_required(sd_folder):
    with pytest.raises(ValueError, match='exactly one'):
        StableDiffusionBackbone()
    with pytest.raises(ValueError, match='exactly one'):
        StableDiffusionBackbone(pretrained=sd_folder, preset='tiny')
