"""Pretrain the tiny SD preset on unlabelled images: the CPU demo's stand-in for SD's prior.

MADM starts from Stable Diffusion, whose VAE and UNet were trained on billions of images.
The ``'tiny'`` preset (:mod:`madm.models.backbones.sd_presets`) has SD's architecture but
random weights, and MADM keeps the VAE frozen: a random VAE is then a fixed random projection
of every 8x8x3 patch to 4 numbers, and everything the segmenter sees passes through it
(method.md §2.2, §2.6). Measured on the event demo (docs/benchmarks.md): with it the source
cross-entropy stalls near 1.25 whether trained 200 or 500 iterations.

:func:`pretrain_tiny_sd` trains the tiny preset's components with their own objectives on
unlabelled images, and writes a diffusers SD folder that ``StableDiffusionBackbone(pretrained=...)``
loads exactly like a downloaded SD-1.4:

* the VAE as an autoencoder: L1 reconstruction of the posterior mean plus a small KL term
  (SD's VAE objective without its perceptual and adversarial terms);
* its ``scaling_factor`` set to 1 / std of the latents, which is how SD's 0.18215 was chosen,
  so DPLG's noise levels and LPLR's latent targets have SD's scale;
* optionally (``unet_steps > 0``) the UNet as SD's denoiser: epsilon prediction on noised
  latents at uniform timesteps, conditioned on the empty prompt.

No labels are used, so the demo's source-only, MADM and oracle runs share the same prior.
"""
import json
import os
import os.path as osp
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

#: File written last into a finished prior folder (what :func:`pretrain_tiny_sd` resumes on).
PRIOR_RECORD = 'pretraining.json'


@dataclass(frozen=True)
class PriorSchedule:
    """How long and how :func:`pretrain_tiny_sd` trains.

    Attributes:
        vae_steps (int): AdamW steps of the VAE autoencoder.
        unet_steps (int): AdamW steps of the UNet denoiser (0: keep its random weights).
        batch_size (int): Crops per step.
        crop_size (int): Side of the square random crops (a multiple of 8).
        vae_lr (float): Peak learning rate of the VAE (one-cycle schedule).
        unet_lr (float): Peak learning rate of the UNet (one-cycle schedule).
        kl_weight (float): Weight of the VAE's KL term.
    """

    vae_steps: int = 600
    unet_steps: int = 0
    batch_size: int = 16
    crop_size: int = 64
    vae_lr: float = 2e-3
    unet_lr: float = 1e-3
    kl_weight: float = 1e-6


def random_crops(images: Sequence[np.ndarray], batch_size: int, crop_size: int,
                 rng: np.random.Generator) -> torch.Tensor:
    """A batch of random square crops, randomly flipped, scaled to [-1, 1].

    Args:
        images (Sequence[np.ndarray]): ``(H, W, 3)`` uint8 RGB images, each at least
            ``crop_size`` on both sides.
        batch_size (int): Crops in the batch.
        crop_size (int): Side of each crop.
        rng (np.random.Generator): Source of the draws.

    Returns:
        torch.Tensor: ``(batch_size, 3, crop_size, crop_size)`` float32 in [-1, 1].
    """
    crops = np.empty((batch_size, crop_size, crop_size, 3), np.uint8)
    for k in range(batch_size):
        image = images[rng.integers(len(images))]
        h, w = image.shape[:2]
        y, x = rng.integers(h - crop_size + 1), rng.integers(w - crop_size + 1)
        crop = image[y:y + crop_size, x:x + crop_size]
        crops[k] = crop[:, ::-1] if rng.random() < 0.5 else crop
    return torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def _fit(module: torch.nn.Module, step_loss: Callable[[], torch.Tensor], steps: int, lr: float,
         log: Callable[[int, float], None] | None) -> list[float]:
    """AdamW with a one-cycle schedule on ``module``; every step's loss; leaves it in eval."""
    if steps <= 0:
        return []
    module.train()
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=0.0)
    lr_schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps,
                                                      pct_start=0.1)
    losses = []
    for step in range(steps):
        loss = step_loss()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        lr_schedule.step()
        losses.append(loss.item())
        if log is not None:
            log(step, losses[-1])
    module.eval()
    return losses


def pretrain_vae(vae: torch.nn.Module, images: Sequence[np.ndarray], schedule: PriorSchedule,
                 rng: np.random.Generator, log: Callable[[int, float], None] | None = None
                 ) -> list[float]:
    """Train ``vae`` (diffusers ``AutoencoderKL``) to reconstruct crops of ``images``.

    The decoder reconstructs from the posterior mean, the latent MADM uses (method.md §2.2).

    Returns:
        list[float]: The loss of every step.
    """
    def step_loss() -> torch.Tensor:
        x = random_crops(images, schedule.batch_size, schedule.crop_size, rng)
        posterior = vae.encode(x).latent_dist
        reconstruction = vae.decode(posterior.mean).sample
        return (reconstruction - x).abs().mean() + schedule.kl_weight * posterior.kl().mean()

    return _fit(vae, step_loss, schedule.vae_steps, schedule.vae_lr, log)


@torch.no_grad()
def latent_scaling_factor(vae: torch.nn.Module, images: Sequence[np.ndarray], crop_size: int,
                          rng: np.random.Generator, num_crops: int = 128) -> float:
    """1 / std of the VAE's posterior means over random crops (SD's rule for 0.18215)."""
    latents = [vae.encode(random_crops(images, 32, crop_size, rng)).latent_dist.mean
               for _ in range(max(1, num_crops // 32))]
    return float(1.0 / torch.cat(latents).std())


def pretrain_unet(unet: torch.nn.Module, vae: torch.nn.Module, scheduler,
                  empty_prompt: torch.Tensor, images: Sequence[np.ndarray],
                  schedule: PriorSchedule, rng: np.random.Generator,
                  log: Callable[[int, float], None] | None = None) -> list[float]:
    """Train ``unet`` as SD's denoiser on the (frozen) VAE's scaled latents.

    Epsilon prediction (MSE) at timesteps drawn uniformly from the scheduler's range,
    conditioned on ``empty_prompt`` (``(1, 77, D)``), the prompt MADM uses.

    Returns:
        list[float]: The loss of every step.
    """
    generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
    num_timesteps = scheduler.config.num_train_timesteps
    context = empty_prompt.expand(schedule.batch_size, -1, -1)

    def step_loss() -> torch.Tensor:
        with torch.no_grad():
            x = random_crops(images, schedule.batch_size, schedule.crop_size, rng)
            latent = vae.encode(x).latent_dist.mean * vae.config.scaling_factor
        noise = torch.randn(latent.shape, generator=generator)
        timestep = torch.randint(0, num_timesteps, (len(latent), ), generator=generator)
        prediction = unet(scheduler.add_noise(latent, noise, timestep), timestep,
                          encoder_hidden_states=context).sample
        return F.mse_loss(prediction, noise)

    return _fit(unet, step_loss, schedule.unet_steps, schedule.unet_lr, log)


def _check_images(images: Sequence[np.ndarray], crop_size: int) -> None:
    if not images:
        raise ValueError('pretrain_tiny_sd needs at least one image.')
    if crop_size % 8:
        raise ValueError(f'crop_size must be a multiple of 8 (the VAE stride), got {crop_size}.')
    for k, image in enumerate(images):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f'image {k} must be (H, W, 3) uint8 RGB, got {image.shape} '
                             f'{image.dtype}.')
        if min(image.shape[:2]) < crop_size:
            raise ValueError(f'image {k} is {image.shape[1]}x{image.shape[0]}, smaller than '
                             f'the {crop_size}x{crop_size} crops.')


def _train_into(staging: str, images: Sequence[np.ndarray], schedule: PriorSchedule, seed: int,
                echo: Callable[[str], None]) -> dict:
    """Write the random preset to ``staging``, train it there, and return the record."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

    from madm.models.backbones.sd_backbone import (empty_prompt_embedding,
                                                   no_transformers_progress_bars)
    from madm.models.backbones.sd_presets import save_preset_as_pretrained
    with no_transformers_progress_bars():
        save_preset_as_pretrained('tiny', staging, seed=seed)
    rng = np.random.default_rng(seed)
    weights = dict(local_files_only=True, low_cpu_mem_usage=False)  # no `accelerate` warning
    vae = AutoencoderKL.from_pretrained(staging, subfolder='vae', **weights)
    every = max(1, schedule.vae_steps // 5)

    def log_vae(step: int, loss: float) -> None:
        if (step + 1) % every == 0:
            echo(f'    VAE step {step + 1}/{schedule.vae_steps}  L1 {loss:.4f}')

    vae_losses = pretrain_vae(vae, images, schedule, rng, log_vae)
    scaling = latent_scaling_factor(vae, images, schedule.crop_size, rng)
    vae.register_to_config(scaling_factor=scaling)
    vae.save_pretrained(osp.join(staging, 'vae'), safe_serialization=True)
    record = dict(schedule=asdict(schedule), seed=seed, num_images=len(images),
                  scaling_factor=scaling, vae_loss_first=vae_losses[0] if vae_losses else None,
                  vae_loss_last=vae_losses[-1] if vae_losses else None)
    if schedule.unet_steps > 0:
        unet = UNet2DConditionModel.from_pretrained(staging, subfolder='unet', **weights)
        scheduler = DDPMScheduler.from_pretrained(staging, subfolder='scheduler',
                                                  local_files_only=True)
        every_unet = max(1, schedule.unet_steps // 5)

        def log_unet(step: int, loss: float) -> None:
            if (step + 1) % every_unet == 0:
                echo(f'    UNet step {step + 1}/{schedule.unet_steps}  MSE {loss:.4f}')

        unet_losses = pretrain_unet(unet, vae, scheduler, empty_prompt_embedding(staging),
                                    images, schedule, rng, log_unet)
        unet.save_pretrained(osp.join(staging, 'unet'), safe_serialization=True)
        record.update(unet_loss_first=unet_losses[0], unet_loss_last=unet_losses[-1])
    return record


def load_prior_record(out_dir: str) -> dict | None:
    """The record of a finished prior folder, or None when ``out_dir`` holds no finished prior."""
    record_file = osp.join(out_dir, PRIOR_RECORD)
    if not osp.isfile(record_file):
        return None
    with open(record_file) as f:
        return json.load(f)


def pretrain_tiny_sd(images: Sequence[np.ndarray], out_dir: str,
                     schedule: PriorSchedule = PriorSchedule(), seed: int = 0,
                     echo: Callable[[str], None] | None = None) -> dict:
    """Pretrain the ``'tiny'`` preset on ``images`` and save it as a diffusers SD folder.

    The folder is assembled next to ``out_dir`` and moved into place when complete, so
    an interrupted run leaves nothing that loads; a folder that already holds
    :data:`PRIOR_RECORD` is kept and its record returned (resume).

    Args:
        images (Sequence[np.ndarray]): Unlabelled ``(H, W, 3)`` uint8 RGB images.
        out_dir (str): Output SD folder (``unet/``, ``vae/``, ``scheduler/``,
            ``text_encoder/``, ``tokenizer/`` and :data:`PRIOR_RECORD`).
        schedule (PriorSchedule): Steps, batch, crops and learning rates.
        seed (int): Seed of the random initialisation and of every draw.
        echo (Callable[[str], None] | None): Receives a few progress lines.

    Returns:
        dict: The record: schedule, seed, number of images, ``scaling_factor``, first and
        last losses of each part, seconds.
    """
    record = load_prior_record(out_dir)
    if record is not None:
        return record
    _check_images(images, schedule.crop_size)
    echo = echo or (lambda line: None)
    start = time.monotonic()
    staging = out_dir.rstrip('/') + '.partial'
    shutil.rmtree(staging, ignore_errors=True)
    try:
        record = _train_into(staging, images, schedule, seed, echo)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    record['seconds'] = round(time.monotonic() - start, 1)
    with open(osp.join(staging, PRIOR_RECORD), 'w') as f:
        json.dump(record, f, indent=2)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(staging, out_dir)
    return record
