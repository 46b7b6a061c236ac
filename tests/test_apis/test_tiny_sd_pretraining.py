"""madm.apis.tiny_sd_pretraining: the demo's tiny SD prior, pretrained without labels."""
import json
import os.path as osp

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import madm.apis.tiny_sd_pretraining as pretraining
from madm.apis.tiny_sd_pretraining import (PRIOR_RECORD, PriorSchedule, latent_scaling_factor,
                                           pretrain_tiny_sd, pretrain_unet, pretrain_vae,
                                           random_crops)
from madm.models.backbones import StableDiffusionBackbone
from madm.models.backbones.sd_presets import build_preset_components


def _images(num: int = 6, seed: int = 0) -> list[np.ndarray]:
    """Two-colour blocky images (learnable in a few steps), 64x96 RGB."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(num):
        image = np.zeros((64, 96, 3), np.uint8)
        image[:] = rng.integers(0, 256, 3)
        y, x = rng.integers(0, 32), rng.integers(0, 64)
        image[y:y + 32, x:x + 32] = rng.integers(0, 256, 3)
        images.append(image)
    return images


def test_random_crops_shape_range_and_reproducible():
    images = _images()
    a = random_crops(images, 5, 32, np.random.default_rng(1))
    b = random_crops(images, 5, 32, np.random.default_rng(1))
    assert a.shape == (5, 3, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, b) and a.min() >= -1.0 and a.max() <= 1.0
    # each crop is a window of one image (flipped or not): its colours come from that image
    image = images[0]
    only = random_crops([image], 1, 64, np.random.default_rng(0))[0]
    pixels = ((only.permute(1, 2, 0) + 1) * 127.5).round().to(torch.uint8).reshape(-1, 3)
    assert set(map(tuple, pixels.tolist())) <= set(map(tuple, image.reshape(-1, 3).tolist()))


def test_vae_pretraining_lowers_the_reconstruction_error():
    torch.manual_seed(0)
    vae = build_preset_components('tiny').vae
    images = _images()
    held_out = random_crops(images, 16, 32, np.random.default_rng(9))

    def error() -> float:
        with torch.no_grad():
            posterior_mean = vae.encode(held_out).latent_dist.mean
            return (vae.decode(posterior_mean).sample - held_out).abs().mean().item()

    before = error()
    losses = pretrain_vae(vae, images, PriorSchedule(vae_steps=100, batch_size=8, crop_size=32,
                                                     vae_lr=3e-3), np.random.default_rng(0))
    assert len(losses) == 100 and not vae.training
    assert error() < 0.85 * before  # measured: 0.61 -> ~0.46


def test_scaling_factor_gives_unit_std_latents():
    torch.manual_seed(0)
    vae = build_preset_components('tiny').vae.eval()
    images = _images()
    scale = latent_scaling_factor(vae, images, 32, np.random.default_rng(0), num_crops=256)
    with torch.no_grad():
        z = vae.encode(random_crops(images, 256, 32, np.random.default_rng(5))).latent_dist.mean
    assert (z * scale).std().item() == pytest.approx(1.0, abs=0.1)


def test_pretrain_tiny_sd_writes_a_loadable_sd_folder_and_resumes(tmp_path, monkeypatch):
    out = str(tmp_path / 'tiny-sd')
    schedule = PriorSchedule(vae_steps=3, unet_steps=2, batch_size=2, crop_size=32)
    record = pretrain_tiny_sd(_images(), out, schedule, seed=0)
    assert not osp.exists(out + '.partial')
    with open(osp.join(out, PRIOR_RECORD)) as f:
        assert json.load(f) == record
    assert record['num_images'] == 6 and record['schedule']['unet_steps'] == 2
    assert record['unet_loss_last'] is not None
    with open(osp.join(out, 'vae', 'config.json')) as f:
        assert json.load(f)['scaling_factor'] == pytest.approx(record['scaling_factor'])
    # trained, not the seed-0 random initialisation the folder started from
    torch.manual_seed(0)
    random_parts = build_preset_components('tiny')
    for part, module in (('vae', random_parts.vae), ('unet', random_parts.unet)):
        saved = load_file(osp.join(out, part, 'diffusion_pytorch_model.safetensors'))
        assert any(not torch.equal(saved[k], v) for k, v in module.state_dict().items())
    # the backbone loads it like a downloaded SD folder and runs
    backbone = StableDiffusionBackbone(pretrained=out)
    assert backbone.scaling_factor == pytest.approx(record['scaling_factor'])
    features = backbone(torch.rand(1, 3, 64, 64))
    assert features[0].shape == (1, 3, 64, 64)
    # a finished folder is reused: nothing is trained again
    monkeypatch.setattr(pretraining, 'pretrain_vae', lambda *a, **k: pytest.fail('retrained'))
    assert pretrain_tiny_sd(_images(), out, schedule) == record


def test_interrupted_pretraining_leaves_no_folder_that_loads(tmp_path, monkeypatch):
    out = str(tmp_path / 'tiny-sd')

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pretraining, 'pretrain_vae', interrupted)
    with pytest.raises(KeyboardInterrupt):
        pretrain_tiny_sd(_images(), out, PriorSchedule(vae_steps=2, batch_size=2, crop_size=32))
    assert not osp.exists(out) and not osp.exists(out + '.partial')


@pytest.mark.parametrize('images, crop, match', [
    ([], 32, 'at least one image'),
    ([np.zeros((16, 96, 3), np.uint8)], 32, 'smaller than'),
    ([np.zeros((64, 96, 3), np.float32)], 32, 'uint8 RGB'),
    ([np.zeros((64, 96), np.uint8)], 32, 'uint8 RGB'),
    ([np.zeros((64, 96, 3), np.uint8)], 30, 'multiple of 8'),
])
def test_bad_images_are_rejected_before_training(tmp_path, images, crop, match):
    with pytest.raises(ValueError, match=match):
        pretrain_tiny_sd(images, str(tmp_path / 'x'), PriorSchedule(crop_size=crop))
    assert not osp.exists(tmp_path / 'x')


def test_unet_pretraining_lowers_the_denoising_error():
    torch.manual_seed(0)
    parts = build_preset_components('tiny')
    vae, unet, scheduler = parts.vae.eval(), parts.unet, parts.scheduler
    with torch.no_grad():
        empty = parts.text_encoder(input_ids=torch.zeros(1, 77, dtype=torch.long)).last_hidden_state
    images = _images()
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        latent = vae.encode(random_crops(images, 16, 32, np.random.default_rng(9))).latent_dist.mean
        latent = latent * vae.config.scaling_factor
    noise = torch.randn(latent.shape, generator=generator)
    timestep = torch.randint(0, 1000, (16, ), generator=generator)
    noisy = scheduler.add_noise(latent, noise, timestep)

    def error() -> float:
        with torch.no_grad():
            prediction = unet(noisy, timestep, encoder_hidden_states=empty.expand(16, -1, -1))
            return torch.nn.functional.mse_loss(prediction.sample, noise).item()

    before = error()
    losses = pretrain_unet(unet, vae, scheduler, empty, images,
                           PriorSchedule(unet_steps=60, batch_size=8, crop_size=32),
                           np.random.default_rng(0))
    assert len(losses) == 60 and not unet.training
    assert error() < 0.7 * before  # measured: 1.01 -> 0.33
