"""In-code Stable Diffusion architecture presets, for tests and for random-init benchmarks.

A preset describes the four components that :class:`StableDiffusionBackbone` reads from a
diffusers SD folder (method.md §2.1): the UNet, the VAE, the DDPM noise scheduler and the CLIP
text encoder. ``'sd14'`` is the exact architecture of ``CompVis/stable-diffusion-v1-4``;
``'tiny'`` keeps SD's block layout (so the up-path taps 5/8/11 of method.md §2.5 exist) with
small widths, and runs on a CPU in milliseconds at 64×64 inputs.

:func:`save_preset_as_pretrained` writes a randomly initialised preset in the diffusers folder
layout (``unet/``, ``vae/``, ``scheduler/``, ``text_encoder/``, ``tokenizer/``), which is what
``StableDiffusionBackbone(pretrained=...)`` loads. The tokenizer it writes is the real 49408-token
CLIP BPE, rebuilt offline from the vocabulary file bundled with mmseg.
"""
import gzip
import json
import os
import os.path as osp
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

SDPreset = Literal['tiny', 'sd14']

#: Size of the CLIP BPE vocabulary used by SD-1.x (48894 merges + 512 byte tokens + 2 specials).
CLIP_VOCAB_SIZE = 49408

_SD_DOWN_BLOCKS = ('CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D',
                   'DownBlock2D')
_SD_UP_BLOCKS = ('UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D')


@dataclass(frozen=True)
class SDPresetConfig:
    """Constructor arguments of the four SD components of one preset.

    Attributes:
        unet (dict[str, Any]): kwargs of diffusers ``UNet2DConditionModel``.
        vae (dict[str, Any]): kwargs of diffusers ``AutoencoderKL``.
        scheduler (dict[str, Any]): kwargs of diffusers ``DDPMScheduler``.
        text_encoder (dict[str, Any]): kwargs of transformers ``CLIPTextConfig``.
    """

    unet: dict[str, Any]
    vae: dict[str, Any]
    scheduler: dict[str, Any]
    text_encoder: dict[str, Any]

    def clip_text_config(self) -> 'CLIPTextConfig':
        """Return ``text_encoder`` as a transformers ``CLIPTextConfig``."""
        from transformers import CLIPTextConfig
        return CLIPTextConfig(**self.text_encoder)


def _sd_scheduler() -> dict[str, Any]:
    # SD-1.x's training schedule (method.md §2.3); only add_noise is used.
    return dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                beta_schedule='scaled_linear', clip_sample=False)


def get_preset(preset: SDPreset) -> SDPresetConfig:
    """Return the component configs of an architecture preset.

    Args:
        preset (Literal['tiny', 'sd14']): ``'sd14'`` is Stable Diffusion v1-4 (UNet 859.5M,
            VAE 83.7M, CLIP ViT-L/14 text encoder 123M parameters). ``'tiny'`` has SD's block
            types and ``layers_per_block=2`` (12 up-path layers, 8× VAE) with widths of 16-64,
            a few million parameters in all.

    Returns:
        SDPresetConfig: fresh dicts, safe to modify.
    """
    if preset == 'sd14':
        unet = dict(sample_size=64, in_channels=4, out_channels=4, center_input_sample=False,
                    flip_sin_to_cos=True, freq_shift=0, down_block_types=_SD_DOWN_BLOCKS,
                    up_block_types=_SD_UP_BLOCKS, block_out_channels=(320, 640, 1280, 1280),
                    layers_per_block=2, downsample_padding=1, mid_block_scale_factor=1,
                    act_fn='silu', norm_num_groups=32, norm_eps=1e-5, cross_attention_dim=768,
                    attention_head_dim=8)
        vae = dict(in_channels=3, out_channels=3, down_block_types=('DownEncoderBlock2D', ) * 4,
                   up_block_types=('UpDecoderBlock2D', ) * 4,
                   block_out_channels=(128, 256, 512, 512), layers_per_block=2, act_fn='silu',
                   latent_channels=4, norm_num_groups=32, sample_size=512,
                   scaling_factor=0.18215)
        text = dict(vocab_size=CLIP_VOCAB_SIZE, hidden_size=768, intermediate_size=3072,
                    num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77,
                    hidden_act='quick_gelu', layer_norm_eps=1e-5, projection_dim=768,
                    bos_token_id=0, eos_token_id=2, pad_token_id=1)
    elif preset == 'tiny':
        unet = dict(sample_size=8, in_channels=4, out_channels=4, down_block_types=_SD_DOWN_BLOCKS,
                    up_block_types=_SD_UP_BLOCKS, block_out_channels=(32, 64, 64, 64),
                    layers_per_block=2, norm_num_groups=16, cross_attention_dim=32,
                    attention_head_dim=4)
        vae = dict(in_channels=3, out_channels=3, down_block_types=('DownEncoderBlock2D', ) * 4,
                   up_block_types=('UpDecoderBlock2D', ) * 4, block_out_channels=(16, 16, 32, 32),
                   layers_per_block=1, latent_channels=4, norm_num_groups=16, sample_size=64,
                   scaling_factor=0.18215)
        text = dict(vocab_size=CLIP_VOCAB_SIZE, hidden_size=32, intermediate_size=64,
                    num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77,
                    hidden_act='quick_gelu', projection_dim=32, bos_token_id=0, eos_token_id=2,
                    pad_token_id=1)
    else:
        raise ValueError(f"Unknown SD preset {preset!r}; expected 'tiny' or 'sd14'.")
    return SDPresetConfig(unet=unet, vae=vae, scheduler=_sd_scheduler(), text_encoder=text)


@dataclass
class SDComponents:
    """Randomly initialised SD components of a preset (see :func:`build_preset_components`)."""

    unet: 'UNet2DConditionModel'
    vae: 'AutoencoderKL'
    scheduler: 'DDPMScheduler'
    text_encoder: 'CLIPTextModel'


def build_preset_components(preset: SDPreset) -> SDComponents:
    """Build the preset's UNet, VAE, scheduler and text encoder with random weights.

    The modules are created in a fixed order (UNet, VAE, text encoder) from the global torch
    RNG, so the same seed gives the same weights here and in :func:`save_preset_as_pretrained`.

    Args:
        preset (Literal['tiny', 'sd14']): The architecture preset.

    Returns:
        SDComponents: the four components, text encoder in eval mode.
    """
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel
    cfg = get_preset(preset)
    unet = UNet2DConditionModel(**cfg.unet)
    vae = AutoencoderKL(**cfg.vae)
    text_encoder = CLIPTextModel(cfg.clip_text_config()).eval()
    return SDComponents(unet=unet, vae=vae, scheduler=DDPMScheduler(**cfg.scheduler),
                        text_encoder=text_encoder)


def _clip_bpe_merges() -> list[str]:
    """The 48894 BPE merges of CLIP, read from the vocabulary file shipped with mmseg."""
    from mmseg.utils.tokenizer import default_bpe
    with gzip.open(default_bpe()) as f:
        lines = f.read().decode('utf-8').split('\n')
    # Line 0 is a version header; CLIP uses exactly the first 49152 - 256 - 2 merges.
    return lines[1:49152 - 256 - 2 + 1]


def clip_vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    """Rebuild CLIP's tokenizer vocabulary (``vocab.json``) and merges (``merges.txt``).

    The construction is CLIP's own: the 256 byte symbols, the same with the end-of-word
    marker ``</w>``, one token per merge, then ``<|startoftext|>`` (49406) and
    ``<|endoftext|>`` (49407).

    Returns:
        tuple[dict[str, int], list[str]]: token → id (49408 entries) and the merges, one
        ``"a b"`` string each.
    """
    from mmseg.utils.tokenizer import bytes_to_unicode
    merges = _clip_bpe_merges()
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + '</w>' for s in symbols]
    tokens += [''.join(m.split()) for m in merges]
    tokens += ['<|startoftext|>', '<|endoftext|>']
    return {tok: i for i, tok in enumerate(tokens)}, merges


def write_clip_tokenizer(path: str) -> None:
    """Write a CLIP tokenizer folder in SD-1.x's layout, loadable by ``CLIPTokenizer``.

    Files: ``vocab.json``, ``merges.txt``, ``special_tokens_map.json`` and
    ``tokenizer_config.json`` (``model_max_length=77``, padding with ``<|endoftext|>`` as
    SD-1.x's tokenizer does).

    Args:
        path (str): Output folder; created if needed.
    """
    vocab, merges = clip_vocab_and_merges()
    os.makedirs(path, exist_ok=True)
    with open(osp.join(path, 'vocab.json'), 'w', encoding='utf-8') as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(osp.join(path, 'merges.txt'), 'w', encoding='utf-8') as f:
        f.write('#version: 0.2\n' + '\n'.join(merges) + '\n')
    specials = dict(bos_token='<|startoftext|>', eos_token='<|endoftext|>',
                    unk_token='<|endoftext|>', pad_token='<|endoftext|>')
    with open(osp.join(path, 'special_tokens_map.json'), 'w', encoding='utf-8') as f:
        json.dump(specials, f)
    with open(osp.join(path, 'tokenizer_config.json'), 'w', encoding='utf-8') as f:
        json.dump(dict(specials, tokenizer_class='CLIPTokenizer', model_max_length=77,
                       do_lower_case=True), f)


def save_preset_as_pretrained(preset: SDPreset, path: str, seed: int = 0) -> None:
    """Write a randomly initialised preset as a diffusers SD folder (safetensors weights).

    ``torch.manual_seed(seed)`` followed by :func:`build_preset_components` (which is what
    ``StableDiffusionBackbone(preset=...)`` runs) gives the same weights. The global RNG
    state is restored afterwards.

    Args:
        preset (Literal['tiny', 'sd14']): The architecture preset.
        path (str): Output root; gets ``unet/``, ``vae/``, ``scheduler/``,
            ``text_encoder/`` and ``tokenizer/``.
        seed (int): Seed of the random initialisation. Defaults to 0.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        parts = build_preset_components(preset)
    parts.unet.save_pretrained(osp.join(path, 'unet'), safe_serialization=True)
    parts.vae.save_pretrained(osp.join(path, 'vae'), safe_serialization=True)
    parts.scheduler.save_pretrained(osp.join(path, 'scheduler'))
    parts.text_encoder.save_pretrained(osp.join(path, 'text_encoder'), safe_serialization=True)
    write_clip_tokenizer(osp.join(path, 'tokenizer'))
