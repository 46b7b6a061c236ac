"""Stable Diffusion v1.x as a one-step feature backbone (method.md §2)."""
import importlib.util
import os.path as osp
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmseg.registry import MODELS
from mmseg.utils import OptConfigType
from torch import Tensor

from madm.models.utils import set_group_norm_precision
from madm.utils import MissingDataError, require_files
from .prompt_time_conditioning import PromptTimeConditioning
from .sd_presets import CLIP_VOCAB_SIZE, SDPreset, build_preset_components

# Reference: the shared noise is one draw from torch.Generator().manual_seed(42) of shape
# (1, 4, 64, 64), the latent of a 512x512 image (method.md §2.3).
_FIXED_NOISE_SEED = 42
_FIXED_NOISE_SIZE = 64

_SD_FOLDER_FILES = {
    'unet': ('config.json', 'diffusion_pytorch_model.safetensors'),
    'vae': ('config.json', 'diffusion_pytorch_model.safetensors'),
    'scheduler': ('scheduler_config.json', ),
    'text_encoder': ('config.json', 'model.safetensors'),
    'tokenizer': ('vocab.json', 'merges.txt'),
}
_SD_HOW_TO_GET = (
    'A Stable Diffusion v1.x folder in the diffusers layout (unet/, vae/, scheduler/, '
    'text_encoder/, tokenizer/ with safetensors weights) is needed. On a machine with network '
    'access run `hf download CompVis/stable-diffusion-v1-4 --local-dir <dir>` (huggingface_hub\'s '
    'CLI; after accepting the model licence on huggingface.co), copy <dir> here and pass it as '
    '`pretrained=<dir>`; the configs read it from the MADM_SD_PATH environment variable or '
    '`--cfg-options model.backbone.pretrained=<dir>`. For random weights without any download '
    'use `preset=\'sd14\'` or `preset=\'tiny\'`. The CPU event and depth demos (configs/madm/demo_rgb2{event,depth}*.py) '
    'load a tiny SD from <demo data>/<modality>/tiny-sd, which '
    '`python tools/demo.py --modality <modality>` pretrains.')


@dataclass
class SDBackboneOutput:
    """Everything one SD backbone pass produces.

    Attributes:
        features (tuple[Tensor, ...]): Finest first: the decoded UNet output ``s0``
            (N, 3, H, W) when ``with_decoded_output``, then the UNet taps by increasing stride,
            e.g. (N, 320, H/8, W/8), (N, 640, H/16, W/16), (N, 1280, H/32, W/32) for SD-1.x.
        unet_output (Tensor): The UNet's final output (N, 4, H/8, W/8), with grad; the LPLR
            prediction (method.md §5.2).
        decoded (Tensor | None): VAE decode of ``unet_output`` (N, 3, H, W), roughly in
            [-1, 1] but unclipped, detached (method.md §2.6); the same tensor as
            ``features[0]``. None unless ``with_decoded_output``.
    """

    features: tuple[Tensor, ...]
    unet_output: Tensor
    decoded: Tensor | None


def check_sd_folder(root: str) -> None:
    """Raise MissingDataError unless ``root`` is a complete diffusers SD-1.x folder.

    Args:
        root (str): The folder with ``unet/``, ``vae/``, ``scheduler/``, ``text_encoder/``
            and ``tokenizer/``.

    Raises:
        MissingDataError: naming every missing file; if a component only has PyTorch
            ``.bin`` weights, the message says how to convert them to safetensors.
    """
    rel_paths = [osp.join(sub, name) for sub, names in _SD_FOLDER_FILES.items() for name in names]
    # The pickled counterparts that older snapshots ship instead of safetensors.
    pickled = {
        'unet/diffusion_pytorch_model.safetensors': 'unet/diffusion_pytorch_model.bin',
        'vae/diffusion_pytorch_model.safetensors': 'vae/diffusion_pytorch_model.bin',
        'text_encoder/model.safetensors': 'text_encoder/pytorch_model.bin',
    }
    only_bin = [
        p for p, b in pickled.items()
        if not osp.exists(osp.join(root, p)) and osp.exists(osp.join(root, b))
    ]
    if only_bin:
        sub = osp.dirname(only_bin[0])
        if sub == 'text_encoder':
            cls, lib, extra = 'CLIPTextModel', 'transformers', ''
        else:
            cls, lib = ('UNet2DConditionModel', 'diffusers') if sub == 'unet' else (
                'AutoencoderKL', 'diffusers')
            extra = ', use_safetensors=False'
        raise MissingDataError(
            f'Stable Diffusion folder {root!r} has only PyTorch .bin weights for '
            f'{", ".join(only_bin)}; madm loads safetensors only (no pickle). Convert once per '
            f'component, e.g. `python -c "from {lib} import {cls} as M; '
            f"M.from_pretrained('{root}', subfolder='{sub}'{extra}).save_pretrained("
            f"'{osp.join(root, sub)}')\"` (save_pretrained writes safetensors).")
    require_files(root, rel_paths, 'Stable Diffusion folder', _SD_HOW_TO_GET)


def empty_prompt_ids(length: int) -> Tensor:
    """Token ids of the empty prompt as SD-1.x's CLIP tokenizer pads it to ``length``.

    Uses mmseg's bundled CLIP BPE (no network): ``[<|startoftext|>, <|endoftext|> × (L-1)]``,
    because SD-1.x's tokenizer pads with ``<|endoftext|>`` (49407), not with 0 as
    ``mmseg.utils.tokenize`` does.

    Args:
        length (int): Context length ``L`` (77 for CLIP).

    Returns:
        Tensor: (1, L) long.
    """
    from mmseg.utils import tokenize
    sot, eot = tokenize([''], context_length=2)[0].tolist()
    ids = torch.full((1, length), eot, dtype=torch.long)
    ids[0, 0] = sot
    return ids


@contextmanager
def no_transformers_progress_bars() -> Iterator[None]:
    """Hide transformers' per-file 'Loading weights' / 'Writing model shards' bars inside."""
    from transformers.utils import logging as transformers_logging
    enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            transformers_logging.enable_progress_bar()


def empty_prompt_embedding(root: str) -> Tensor:
    """CLIP embedding of the empty prompt, from a diffusers SD folder's tokenizer and text encoder.

    Args:
        root (str): SD folder with ``tokenizer/`` and ``text_encoder/``.

    Returns:
        Tensor: ``(1, 77, D)`` float32 last hidden state.
    """
    from transformers import CLIPTextModel, CLIPTokenizer

    # local_files_only: never touch the network, even when HF_HUB_OFFLINE is unset.
    kw = dict(local_files_only=True)
    tokenizer = CLIPTokenizer.from_pretrained(root, subfolder='tokenizer', **kw)
    if len(tokenizer) != CLIP_VOCAB_SIZE:
        raise MissingDataError(
            f'The tokenizer in {osp.join(root, "tokenizer")!r} has {len(tokenizer)} tokens, '
            f'expected CLIP\'s {CLIP_VOCAB_SIZE}; vocab.json/merges.txt are damaged or not '
            f'SD-1.x\'s. {_SD_HOW_TO_GET}')
    with no_transformers_progress_bars():
        text_encoder = CLIPTextModel.from_pretrained(root, subfolder='text_encoder',
                                                     use_safetensors=True, **kw).eval()
    length = text_encoder.config.max_position_embeddings
    ids = tokenizer([''], padding='max_length', max_length=length, truncation=True,
                    return_tensors='pt').input_ids
    with torch.no_grad():
        return text_encoder(input_ids=ids).last_hidden_state.float()


@MODELS.register_module()
class StableDiffusionBackbone(BaseModule):
    """A Stable Diffusion v1.x UNet used as a one-step feature extractor (method.md §2).

    .. code:: text

        img in [0, 1] (N, 3, H, W), H and W multiples of 64
          -> 2 * img - 1                                           [-1, 1]        (§2.2)
          -> VAE posterior mean * vae.config.scaling_factor, no grad   z (N, 4, H/8, W/8)
          -> scheduler.add_noise(z, ε, t): √ᾱ_t z + √(1-ᾱ_t) ε, also at t = 0    (§2.3)
             ε = fixed seed-42 draw (1, 4, 64, 64), bicubic-resized to the latent size
          -> UNet(z_t, t, encoder_hidden_states = conditioning.context(N))       (§2.4)
             with conditioning.time_offset() added to unet.time_embedding's output
             (forward hook), taps = forward hooks on up-path layers, by module name (§2.5)
          -> unet_output (N, 4, H/8, W/8) (LPLR prediction, §5.2)
          -> s0 = VAE decode(unet_output / scaling_factor), no grad, unclipped   (§2.6)

    Up-path layer ``k`` (0..11 for SD) is ``up_blocks[k // n].attentions[k % n]``, or
    ``.resnets[k % n]`` in blocks without attention, with ``n`` layers per up block; a tap is
    that module's output, before the block's upsampler. The default taps (5, 8, 11) give
    strides 32, 16, 8 and channels 1280, 640, 320 for SD-1.x.

    The backbone knows nothing about adaptation: the segmentor passes its teacher's
    conditioning module (an EMA copy of :attr:`conditioning`) and timestep to :meth:`extract`.

    Args:
        pretrained (str | None): Local diffusers SD-1.x folder (``unet/``, ``vae/``,
            ``scheduler/``, ``text_encoder/``, ``tokenizer/``, safetensors weights). Loaded
            offline; the CLIP text encoder runs once to encode the empty prompt and is then
            dropped. Exactly one of ``pretrained`` and ``preset`` is given.
        preset (Literal['tiny', 'sd14'] | None): Random initialisation from an in-code
            architecture (:mod:`madm.models.backbones.sd_presets`), for tests and benchmarks.
        tap_layers (Sequence[int]): Up-path layers whose outputs are features.
            Defaults to (5, 8, 11) (method.md §2.5).
        with_decoded_output (bool): Also decode the UNet output with the VAE and return it as
            the stride-1 feature ``s0`` (method.md §2.6). Defaults to True.
        trainable (Literal['full', 'frozen', 'lora']): UNet training policy. ``'full'``
            (reference, method.md §2.1) trains the UNet except the modules that run after the
            last tap (rest of that up block, its upsampler, later up blocks, ``conv_norm_out``,
            ``conv_out``), which receive no gradient from the features; ``'frozen'`` trains no
            UNet weight; ``'lora'`` trains LoRA adapters on ``to_q``/``to_k``/``to_v``/
            ``to_out.0`` (needs ``peft``). The VAE is always frozen and in eval mode; the
            conditioning is always trainable. Defaults to 'full'.
        lora_rank (int): LoRA rank, used with ``trainable='lora'``. Defaults to 8.
        lora_alpha (float): LoRA alpha, used with ``trainable='lora'``. Defaults to 8.0.
        noise (Literal['fixed', 'fresh']): ε of the forward noising. Reference: ``'fixed'``,
            one seed-42 Gaussian draw shared by all images and iterations (method.md §2.3,
            §11.3); ``'fresh'`` draws new noise every call. Defaults to 'fixed'.
        gradient_checkpointing (bool): Recompute UNet activations in backward to save
            memory. Defaults to False.
        attention (Literal['sdpa', 'math']): Attention kernel of UNet and VAE: ``'sdpa'`` is
            diffusers' ``AttnProcessor2_0`` (torch scaled_dot_product_attention), ``'math'``
            diffusers' ``AttnProcessor``. Defaults to 'sdpa'.
        vae_dtype (Literal['float32', 'float16', 'bfloat16']): dtype of the VAE weights;
            inputs and outputs are cast. Reference: float16 (method.md §2.1, §11.19); float32
            by default because half-precision convolutions are slow on CPUs.
            Defaults to 'float32'.
        channels_last (bool): Put UNet and VAE in channels-last memory format.
            Defaults to False.
        group_norm_precision (Literal['float32', 'autocast']): Precision of the UNet's and
            the VAE's GroupNorms under autocast. ``'float32'`` is autocast's own rule on CUDA
            (inputs cast up, float32 output) and the reference's; ``'autocast'`` normalises
            in the autocast dtype with float32 statistics
            (:class:`~madm.models.utils.AutocastGroupNorm`), which removes the casts around
            each norm and halves its memory traffic (issue 8, not yet measured on a GPU; not
            in MADM). Same weights and checkpoints either way. Defaults to 'float32'.
        init_cfg (dict | None): mmengine init config; the SD weights and the conditioning
            initialise themselves, so leave it None. Defaults to None.
    """

    def __init__(self,
                 pretrained: str | None = None,
                 preset: SDPreset | None = None,
                 *,
                 tap_layers: Sequence[int] = (5, 8, 11),
                 with_decoded_output: bool = True,
                 trainable: Literal['full', 'frozen', 'lora'] = 'full',
                 lora_rank: int = 8,
                 lora_alpha: float = 8.0,
                 noise: Literal['fixed', 'fresh'] = 'fixed',
                 gradient_checkpointing: bool = False,
                 attention: Literal['sdpa', 'math'] = 'sdpa',
                 vae_dtype: Literal['float32', 'float16', 'bfloat16'] = 'float32',
                 channels_last: bool = False,
                 group_norm_precision: Literal['float32', 'autocast'] = 'float32',
                 init_cfg: OptConfigType = None) -> None:
        super().__init__(init_cfg)
        if (pretrained is None) == (preset is None):
            raise ValueError('Give exactly one of `pretrained` (a local SD folder) and `preset` '
                             f"('tiny' or 'sd14'); got pretrained={pretrained!r}, "
                             f'preset={preset!r}.')
        if noise not in ('fixed', 'fresh'):
            raise ValueError(f"noise must be 'fixed' or 'fresh', got {noise!r}.")
        if pretrained is not None:
            self.unet, self.vae, self.scheduler, empty = self._load_pretrained(pretrained)
        else:
            parts = build_preset_components(preset)
            with torch.no_grad():
                ids = empty_prompt_ids(parts.text_encoder.config.max_position_embeddings)
                empty = parts.text_encoder(input_ids=ids).last_hidden_state
            self.unet, self.vae, self.scheduler = parts.unet, parts.vae, parts.scheduler
        self.conditioning = PromptTimeConditioning(
            empty, time_embed_dim=self.unet.time_embedding.linear_2.out_features)

        self.noise = noise
        self.with_decoded_output = with_decoded_output
        self.scaling_factor = float(self.vae.config.scaling_factor)
        self._vae_dtype = getattr(torch, vae_dtype)
        generator = torch.Generator().manual_seed(_FIXED_NOISE_SEED)
        self.register_buffer(
            'fixed_noise',
            torch.randn(1, self.unet.config.in_channels, _FIXED_NOISE_SIZE, _FIXED_NOISE_SIZE,
                        generator=generator),
            persistent=False)

        self._setup_taps(tuple(tap_layers))
        self._setup_trainable(trainable, lora_rank, lora_alpha)
        self._setup_speed(gradient_checkpointing, attention, channels_last,
                          group_norm_precision)
        if self._vae_dtype != torch.float32:
            self.vae.to(self._vae_dtype)
        self.vae.eval()

    # ------------------------------------------------------------------ construction
    @staticmethod
    def _load_pretrained(root: str) -> tuple[nn.Module, nn.Module, object, Tensor]:
        """Load UNet, VAE, scheduler and the empty-prompt embedding from a local folder."""
        check_sd_folder(root)
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

        # local_files_only: never touch the network, even when HF_HUB_OFFLINE is unset.
        kw = dict(local_files_only=True)
        # Without `accelerate` diffusers falls back to low_cpu_mem_usage=False after a warning
        # that asks to install it; ask for that directly.
        low_memory = importlib.util.find_spec('accelerate') is not None
        weights = dict(kw, use_safetensors=True, low_cpu_mem_usage=low_memory)
        unet = UNet2DConditionModel.from_pretrained(root, subfolder='unet', **weights)
        vae = AutoencoderKL.from_pretrained(root, subfolder='vae', **weights)
        scheduler = DDPMScheduler.from_pretrained(root, subfolder='scheduler', **kw)
        empty = empty_prompt_embedding(root)
        print_log(f'Loaded Stable Diffusion from {root!r}; CLIP text encoder used once for the '
                  'empty prompt and dropped.', logger='current')
        return unet, vae, scheduler, empty

    def _setup_taps(self, tap_layers: tuple[int, ...]) -> None:
        """Resolve tap layers to module names, channels and strides (method.md §2.5)."""
        up_blocks = self.unet.up_blocks
        per_block = len(up_blocks[0].resnets)
        num_layers = per_block * len(up_blocks)
        if not tap_layers or len(set(tap_layers)) != len(tap_layers) or any(
                not 0 <= k < num_layers for k in tap_layers):
            raise ValueError(f'tap_layers must be distinct indices in [0, {num_layers - 1}] '
                             f'(the UNet up path has {num_layers} layers), got {tap_layers}.')
        vae_down = sum(blk.downsamplers is not None for blk in self.vae.encoder.down_blocks)
        unet_down = sum(blk.downsamplers is not None for blk in self.unet.down_blocks)
        self._latent_stride = 2**vae_down
        self._size_multiple = 2**(vae_down + unet_down)

        taps = []
        for k in tap_layers:
            b, i = divmod(k, per_block)
            block = up_blocks[b]
            kind = 'attentions' if getattr(block, 'attentions', None) is not None else 'resnets'
            ups_before = sum(blk.upsamplers is not None for blk in up_blocks[:b])
            stride = self._latent_stride * 2**(unet_down - ups_before)
            taps.append((stride, k, f'up_blocks.{b}.{kind}.{i}', block.resnets[i].out_channels))
        taps.sort()
        self.tap_layers = tuple(t[1] for t in taps)
        self.tap_names = tuple(t[2] for t in taps)
        s0 = ((3, 1), ) if self.with_decoded_output else ()
        self.out_channels: tuple[int, ...] = tuple(c for c, _ in s0) + tuple(t[3] for t in taps)
        self.out_strides: tuple[int, ...] = tuple(s for _, s in s0) + tuple(t[0] for t in taps)

    def modules_after_last_tap(self) -> list[nn.Module]:
        """UNet modules that run after the last tapped layer (they get no feature gradient).

        Returns:
            list[nn.Module]: in forward order, e.g. ``[conv_norm_out, conv_out]`` for SD-1.x
            with taps (5, 8, 11) (method.md §2.1).
        """
        up_blocks = self.unet.up_blocks
        per_block = len(up_blocks[0].resnets)
        b, i = divmod(max(self.tap_layers), per_block)
        block = up_blocks[b]
        after: list[nn.Module] = []
        for j in range(i + 1, per_block):
            after.append(block.resnets[j])
            if getattr(block, 'attentions', None) is not None:
                after.append(block.attentions[j])
        if block.upsamplers is not None:
            after.append(block.upsamplers)
        after.extend(up_blocks[b + 1:])
        after.extend(m for m in (self.unet.conv_norm_out, self.unet.conv_out) if m is not None)
        return after

    def _setup_trainable(self, trainable: str, lora_rank: int, lora_alpha: float) -> None:
        self.vae.requires_grad_(False)
        if trainable == 'full':
            self.unet.requires_grad_(True)
        elif trainable == 'frozen':
            self.unet.requires_grad_(False)
        elif trainable == 'lora':
            try:
                from peft import LoraConfig
            except ImportError as e:
                raise ImportError("trainable='lora' needs the peft package: `pip install peft` "
                                  "(or use trainable='full' as MADM does).") from e
            self.unet.requires_grad_(False)
            # add_adapter marks only the injected LoRA weights trainable.
            self.unet.add_adapter(
                LoraConfig(r=lora_rank, lora_alpha=lora_alpha, init_lora_weights='gaussian',
                           target_modules=['to_q', 'to_k', 'to_v', 'to_out.0']))
        else:
            raise ValueError(f"trainable must be 'full', 'frozen' or 'lora', got {trainable!r}.")
        for module in self.modules_after_last_tap():
            module.requires_grad_(False)

    def _setup_speed(self, gradient_checkpointing: bool, attention: str,
                     channels_last: bool, group_norm_precision: str) -> None:
        from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0
        if attention not in ('sdpa', 'math'):
            raise ValueError(f"attention must be 'sdpa' or 'math', got {attention!r}.")
        set_group_norm_precision(self.unet, group_norm_precision)
        set_group_norm_precision(self.vae, group_norm_precision)
        processor = AttnProcessor2_0 if attention == 'sdpa' else AttnProcessor
        self.unet.set_attn_processor(processor())
        self.vae.set_attn_processor(processor())
        if gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
        self._memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            self.unet.to(memory_format=torch.channels_last)
            self.vae.to(memory_format=torch.channels_last)

    def train(self, mode: bool = True) -> 'StableDiffusionBackbone':
        """Set train mode; the frozen VAE always stays in eval mode."""
        super().train(mode)
        self.vae.eval()
        return self

    # ------------------------------------------------------------------ VAE
    @torch.no_grad()
    def encode_latent(self, img_m11: Tensor) -> Tensor:
        """VAE posterior mean × ``scaling_factor`` (method.md §2.2, §5.1).

        Args:
            img_m11 (Tensor): Images in [-1, 1], (N, 3, H, W), H and W multiples of 8.

        Returns:
            Tensor: Latents (N, 4, H/8, W/8) in the UNet's dtype, no grad.
        """
        x = img_m11.to(self._vae_dtype).contiguous(memory_format=self._memory_format)
        latent = self.vae.encode(x).latent_dist.mean * self.scaling_factor
        return latent.to(self.unet.dtype)

    @torch.no_grad()
    def decode_latent(self, latent: Tensor) -> Tensor:
        """Decode latents with the VAE (method.md §2.6).

        Args:
            latent (Tensor): (N, 4, h, w), scaled as :meth:`encode_latent`'s output.

        Returns:
            Tensor: Images (N, 3, 8h, 8w), roughly in [-1, 1], unclipped, float32, no grad.
        """
        z = (latent / self.scaling_factor).to(self._vae_dtype)
        return self.vae.decode(z.contiguous(memory_format=self._memory_format)).sample.float()

    # ------------------------------------------------------------------ UNet pass
    def add_noise(self, latent: Tensor, timesteps: Tensor) -> Tensor:
        """Noise latents to ``timesteps``: √ᾱ_t z + √(1-ᾱ_t) ε (method.md §2.3).

        Args:
            latent (Tensor): (N, 4, h, w).
            timesteps (Tensor): (N, ) long, in [0, num_train_timesteps).

        Returns:
            Tensor: (N, 4, h, w).
        """
        if self.noise == 'fixed':
            eps = self.fixed_noise
            if eps.shape[-2:] != latent.shape[-2:]:
                eps = F.interpolate(eps, size=latent.shape[-2:], mode='bicubic',
                                    align_corners=False)
            eps = eps.to(latent).expand_as(latent)
        else:
            eps = torch.randn_like(latent)
        return self.scheduler.add_noise(latent, eps, timesteps)

    def _timesteps(self, timestep: int | Tensor, batch_size: int, device: torch.device) -> Tensor:
        num_steps = self.scheduler.config.num_train_timesteps
        if isinstance(timestep, Tensor):
            if timestep.shape != (batch_size, ):
                raise ValueError(f'A timestep tensor must have shape ({batch_size},), got '
                                 f'{tuple(timestep.shape)}.')
            return timestep.to(device=device, dtype=torch.long)
        if not 0 <= timestep < num_steps:
            raise ValueError(f'timestep must be in [0, {num_steps - 1}], got {timestep}.')
        return torch.full((batch_size, ), timestep, dtype=torch.long, device=device)

    @contextmanager
    def _unet_hooks(self, conditioning: PromptTimeConditioning) -> Iterator[dict[str, Tensor]]:
        """Hooks for one UNet call: the time offset (§2.4) and the feature taps (§2.5)."""
        taps: dict[str, Tensor] = {}

        def add_time_offset(module: nn.Module, args: tuple, output: Tensor) -> Tensor:
            return output + conditioning.time_offset().to(output.dtype)

        def store(name: str, module: nn.Module, args: tuple, output) -> None:
            # Transformer2DModel returns a tuple inside the up blocks (return_dict=False).
            taps[name] = output[0] if isinstance(output, tuple) else output

        handles = [self.unet.time_embedding.register_forward_hook(add_time_offset)]
        for name in self.tap_names:
            module = self.unet.get_submodule(name)
            handles.append(module.register_forward_hook(
                lambda m, a, o, name=name: store(name, m, a, o)))
        try:
            yield taps
        finally:
            for handle in handles:
                handle.remove()

    def extract(self,
                img: Tensor,
                timestep: int | Tensor = 0,
                conditioning: PromptTimeConditioning | None = None) -> SDBackboneOutput:
        """Run the full backbone path (see the class docstring).

        Args:
            img (Tensor): Images in [0, 1], (N, 3, H, W), H and W multiples of 64.
            timestep (int | Tensor): Diffusion timestep, one int for the batch or an (N, ) long
                tensor. Defaults to 0 (method.md §2.3).
            conditioning (PromptTimeConditioning | None): Prompt/time conditioning, e.g. the
                teacher's EMA copy. Defaults to None, i.e. :attr:`conditioning`.

        Returns:
            SDBackboneOutput: features, UNet output and decoded UNet output.
        """
        if img.dim() != 4 or img.shape[1] != 3:
            raise ValueError(f'Expected images of shape (N, 3, H, W), got {tuple(img.shape)}.')
        h, w = img.shape[-2:]
        if h % self._size_multiple or w % self._size_multiple:
            raise ValueError(f'Image height and width must be multiples of {self._size_multiple} '
                             f'(VAE and UNet downsampling), got {h}x{w}; pad or resize the '
                             'input, e.g. with the data preprocessor\'s size_divisor.')
        conditioning = self.conditioning if conditioning is None else conditioning
        n = img.shape[0]
        latent = self.encode_latent(img * 2 - 1)
        timesteps = self._timesteps(timestep, n, img.device)
        noisy = self.add_noise(latent, timesteps).contiguous(memory_format=self._memory_format)
        context = conditioning.context(n).to(self.unet.dtype)
        with self._unet_hooks(conditioning) as taps:
            unet_output = self.unet(noisy, timesteps, encoder_hidden_states=context).sample
        features = tuple(taps[name] for name in self.tap_names)
        decoded = None
        if self.with_decoded_output:
            decoded = self.decode_latent(unet_output)
            features = (decoded, ) + features
        return SDBackboneOutput(features=features, unet_output=unet_output, decoded=decoded)

    def forward(self, img: Tensor) -> tuple[Tensor, ...]:
        """Features of :meth:`extract` at t = 0 with :attr:`conditioning`.

        Args:
            img (Tensor): Images in [0, 1], (N, 3, H, W), H and W multiples of 64.

        Returns:
            tuple[Tensor, ...]: ``extract(img).features``, finest first (see
            :attr:`out_channels`, :attr:`out_strides`).
        """
        return self.extract(img).features
