"""Training speed, memory, FLOPs and MFU of a MADM task config (issue 8).

The model is built from a task config (e.g. ``configs/madm/rgb2event.py``) with the SD backbone's
``pretrained`` folder replaced by a randomly initialised architecture preset, and no dataset:
batches are synthetic source/target pairs. One benchmarked iteration is exactly what the Runner
runs, ``model.train_step(batch, optim_wrapper)``: data preprocessing, the whole adaptation step of
:meth:`UDAEncoderDecoder.loss` (EMA update, source pass, teacher pass with DPLG, ClassMix, mixed
pass, LPLR encodes; method.md §1, §10), ``backward`` and the clipped AdamW step.

Measurement choices:

* **Time**: ``warmup`` untimed iterations, then the median over ``iters`` timed ones. On CUDA each
  iteration is bracketed by CUDA events and synchronised, on CPU by ``time.perf_counter``.
* **Memory**: on CUDA, ``torch.cuda.max_memory_allocated`` over the timed iterations (the
  allocator's reserved peak is reported too). On CPU, the process's peak resident set size
  (``resource.getrusage(RUSAGE_SELF).ru_maxrss``): a high-water mark since the process started,
  so it includes Python, the libraries and the model build.
* **FLOPs**: :class:`torch.utils.flop_counter.FlopCounterMode` around one whole step (forward and
  backward of every pass: student source and mixed, teacher, every VAE encode and decode) of a
  copy of the model built on the ``meta`` device, so nothing is computed or allocated and the
  real-scale count runs on any machine. Matmuls, convolutions and attention are counted (on
  meta, SDPA decomposes into counted matmuls; the counter would miss the CPU's fused SDPA
  kernel); the elementwise work and the optimizer are not. torch's formula for a grouped
  convolution's backward overcounts by the groups; :mod:`madm.utils.flop_formulas` replaces it
  (sixteenth session: the reference fusion's 121.36 TFLOP were 62.04). Gradient checkpointing
  is off in that copy, so the count is *model* FLOPs without recomputation, the numerator of MFU.
* **MFU** = FLOPs per iteration / median seconds per iteration / the device's dense bf16 peak
  (:data:`PEAK_BF16_TFLOPS`; a CPU has no entry, pass ``peak_tflops``).
* **Without a GPU**, on the ``meta`` device: the step's peak memory
  (:func:`estimate_peak_memory_on_meta`), a lower bound on its GPU time and the MFU ceilings
  that follow (:func:`estimate_roofline_on_meta`), and the host syncs it would make
  (:func:`audit_host_syncs_on_meta`).
* **Mixed precision**: on CUDA, mmengine's ``AmpOptimWrapper`` as the Runner builds it from the
  task's ``optim_wrapper`` (fp16 with a dynamic ``GradScaler``, the reference, method.md §7;
  bf16 with the scaler disabled). mmengine refuses ``AmpOptimWrapper`` without an accelerator, so
  on CPU :class:`CPUAutocastOptimWrapper` does the same with ``torch.autocast('cpu')`` and
  ``torch.amp.GradScaler('cpu')``.
"""
import contextlib
import copy
import dataclasses
import gc
import logging
import math
import resource
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Literal

import torch
import torch.nn as nn
from mmengine.config import Config, ConfigDict
from mmengine.logging import MessageHub, MMLogger, print_log
from mmengine.optim import OptimWrapper, build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from madm.models.data_preprocessors.uda_data_preprocessor import pinned
from madm.utils.compile_modules import (HEAD_MODULES, UNET_BLOCK_MODULES, UNET_MODULES,
                                        VAE_MODULES, compile_submodules)
from madm.utils.deferred_scalars import DeferredScalars, defer_grad_norm_log
from madm.utils.flop_formulas import CORRECTED_FLOP_FORMULAS
from madm.utils.host_sync_audit import HostSyncAudit, MetaPlaceholders
from madm.utils.meta_memory import EmulatedCUDAAutocast, LiveMemoryTracker
from madm.utils.roofline import DEVICE_SPECS, RooflineCounter, count_parts

AmpMode = Literal['bf16', 'fp16', 'none']
_AMP_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16, 'none': None}

#: Dense (no sparsity) bf16 tensor-core peak in TFLOP/s, matched in order against
#: ``torch.cuda.get_device_name()``. H200 is the H100's GH100 chip with more memory.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ('H200', 989.0),
    ('H100 PCIe', 756.0),
    ('H100', 989.0),  # SXM
)

#: Neck and head widths used with ``preset='tiny'`` (those of tests/data/configs/tiny_madm.py),
#: so that the whole model, not only the backbone, is small enough for a CPU.
TINY_NECK_HEAD = dict(neck_out_channels=[16, 32, 32, 32], bottleneck_channels=16,
                      neck_norm_groups=8, head_channels=32, embed_dims=16)

#: DSEC's 640x440 frames padded to the backbone's multiple of 64, as (H, W).
DSEC_PADDED_SIZE = (448, 640)


@dataclass
class BenchmarkSettings:
    """What to build and how to run it; every speed lever of issue 8 is one field.

    Attributes:
        preset (Literal['sd14', 'tiny']): SD architecture substituted for the config's
            ``pretrained`` folder, randomly initialised. ``'tiny'`` also shrinks neck and head
            (:data:`TINY_NECK_HEAD`). Defaults to 'sd14'.
        device (str): ``'cuda'`` or ``'cpu'``. Defaults to 'cuda'.
        batch_size (int): Source/target pairs per iteration. Defaults to 2 (method.md §7).
        size (tuple[int, int]): Crop ``(H, W)``, multiples of 64. Defaults to (512, 512).
        iters (int): Timed iterations. Defaults to 10.
        warmup (int): Untimed iterations before them. Defaults to 3.
        amp (Literal['bf16', 'fp16', 'none']): Autocast dtype; fp16 adds a dynamic GradScaler
            (the reference, method.md §7). Defaults to 'bf16'.
        gradient_checkpointing (bool | None): Recompute UNet activations in backward; None
            keeps the config's (off in the reference configs, on in the ``_1gpu-24gb`` ones).
            Defaults to None.
        attention (Literal['sdpa', 'math']): Attention kernel. Defaults to 'sdpa'.
        vae_dtype (Literal['float32', 'float16', 'bfloat16'] | None): VAE weight dtype (the VAE
            always runs without grad); None keeps the config's. Defaults to None.
        fusion_stride (int | None): DAFormer fusion at 1/s of the image instead of at s0's full
            resolution (method.md §11.14); None keeps the reference. Defaults to None.
        compile (bool): ``torch.compile`` the UNet in place, block by block
            (``UNET_BLOCK_MODULES``: each feature tap ends a graph). Defaults to False.
        compile_unet_whole (bool): With ``compile``, compile the UNet as one graph instead
            (``UNET_MODULES``), whose gradients inductor got wrong on a CPU (PyTorch 2.13,
            eighteenth and nineteenth sessions). Defaults to False.
        compile_mode (Literal['default', 'reduce-overhead', 'max-autotune-no-cudagraphs']):
            ``torch.compile``'s mode for ``compile``, ``compile_head`` and ``compile_vae``;
            ``'reduce-overhead'`` replays the compiled graphs as CUDA graphs, which removes
            the host's kernel launches from the step. Defaults to 'default'.
        head_with_cp (bool): The head's ``with_cp``: recompute its fusion in backward.
            Defaults to False.
        head_resize (Literal['interpolate', 'matmul'] | None): The head's ``resize_impl``: how
            the embeddings are resized to the fusion size; None keeps the config's.
            Defaults to None.
        compile_head (bool): ``torch.compile`` the student's and the teacher's decode heads
            in place. Defaults to False.
        compile_vae (bool): ``torch.compile`` the frozen VAE's encoder and decoder in place
            (no grad; at stride 4 about half the step's FLOPs and of its roofline bound). With
            ``compile_mode='reduce-overhead'`` they compile in the default mode, without CUDA
            graphs: a graph's outputs are overwritten at its next replay, and the neck's first
            convolution keeps the source pass's decoded ``s0`` for backward while the teacher
            and the mixed pass decode again. Defaults to False.
        compile_backend (str): ``torch.compile``'s backend for the three above;
            ``'aot_eager'`` traces forward and backward as ``'inductor'`` does without
            generating kernels, to tell a tracing fault from a code-generation one.
            Defaults to 'inductor'.
        fused_adamw (bool): ``AdamW(fused=True)``. Defaults to False.
        channels_last (bool): UNet and VAE in channels-last memory format. Defaults to False.
        group_norm_autocast (bool): The GroupNorms of UNet, VAE and neck normalise in the
            autocast dtype (the backbone's and the neck's ``group_norm_precision='autocast'``)
            instead of float32. Defaults to False.
        non_blocking_input (bool): On CUDA, the batch sits in pinned memory and the data
            preprocessor copies it with ``non_blocking=True`` (its ``non_blocking``; in
            training also set ``train_dataloader.pin_memory=True``). Defaults to False.
        class_mix_on_device (bool): ClassMix chooses its classes on the device, without a
            host synchronisation (the segmentor's ``class_mix.on_device``; not in MADM).
            Defaults to False.
        deferred_log (bool): The clipped gradient norm stays on the device instead of being
            logged with ``float()`` inside the step (what ``DeferredRuntimeInfoHook`` does in
            training, :func:`madm.utils.deferred_scalars.defer_grad_norm_log`). Defaults to
            False.
        cudnn_benchmark (bool): ``torch.backends.cudnn.benchmark`` (autotuned convolution
            algorithms; the Runner's ``env_cfg.cudnn_benchmark``). Defaults to False.
        merge_param_groups (bool | None): One AdamW parameter group per set of
            hyper-parameters (``MergedParamGroupsOptimWrapperConstructor``) instead of
            mmengine's one per parameter; None keeps the config's. Defaults to None.
        seed (int): Seed of the weights and of the synthetic batch. Defaults to 0.
    """

    preset: Literal['sd14', 'tiny'] = 'sd14'
    device: str = 'cuda'
    batch_size: int = 2
    size: tuple[int, int] = (512, 512)
    iters: int = 10
    warmup: int = 3
    amp: AmpMode = 'bf16'
    gradient_checkpointing: bool | None = None
    attention: Literal['sdpa', 'math'] = 'sdpa'
    vae_dtype: Literal['float32', 'float16', 'bfloat16'] | None = None
    fusion_stride: int | None = None
    compile: bool = False
    compile_unet_whole: bool = False
    compile_mode: Literal['default', 'reduce-overhead', 'max-autotune-no-cudagraphs'] = 'default'
    head_with_cp: bool = False
    head_resize: Literal['interpolate', 'matmul'] | None = None
    compile_head: bool = False
    compile_vae: bool = False
    compile_backend: str = 'inductor'
    fused_adamw: bool = False
    channels_last: bool = False
    group_norm_autocast: bool = False
    non_blocking_input: bool = False
    class_mix_on_device: bool = False
    deferred_log: bool = False
    cudnn_benchmark: bool = False
    merge_param_groups: bool | None = None
    seed: int = 0


@dataclass
class BenchmarkResult:
    """Everything :func:`run_benchmark` measured (JSON-ready via :meth:`to_dict`).

    Attributes:
        settings (dict): The :class:`BenchmarkSettings` used.
        device_name (str): GPU name or ``'cpu (N threads)'``.
        torch_version (str): ``torch.__version__``.
        params_trainable (int): Trainable parameters of the student.
        sec_per_iter (float): Median seconds per training iteration.
        iter_per_sec (float): ``1 / sec_per_iter``.
        pairs_per_sec (float): Source/target pairs per second.
        iter_times (list[float]): Seconds of every timed iteration.
        peak_memory_bytes (int): Peak memory, see ``peak_memory_kind``.
        peak_memory_kind (str): How it was measured.
        flops_per_iter (float): Model FLOPs of one training iteration (meta-device count).
        achieved_tflops (float): ``flops_per_iter / sec_per_iter / 1e12``.
        peak_tflops (float | None): The device's dense bf16 peak, if known.
        mfu (float | None): ``achieved_tflops / peak_tflops``.
        inference (dict): ``'{H}x{W}'`` → images/s of a student forward at that size.
        fp32_check (dict | None): Loss term → fp32 value, mixed value, relative difference.
        compiled_grad_check (dict | None): One step's gradients, compiled against eager
            (:func:`gradient_differences`), for a compiled variant.
        host_syncs (dict | None): On CUDA, the synchronising calls of one training step
            (:func:`count_host_syncs`).
        profile (str | None): The operators of one training step by device time
            (:func:`profile_train_step`), if asked for.
    """

    settings: dict
    device_name: str
    torch_version: str
    params_trainable: int
    sec_per_iter: float
    iter_per_sec: float
    pairs_per_sec: float
    iter_times: list[float]
    peak_memory_bytes: int
    peak_memory_kind: str
    flops_per_iter: float
    achieved_tflops: float
    peak_tflops: float | None
    mfu: float | None
    inference: dict = field(default_factory=dict)
    fp32_check: dict | None = None
    compiled_grad_check: dict | None = None
    host_syncs: dict | None = None
    profile: str | None = None

    def to_dict(self) -> dict:
        """Return the result as plain JSON-serialisable types."""
        return asdict(self)


# --------------------------------------------------------------------------- model
@contextlib.contextmanager
def meta_parameters() -> Iterator[None]:
    """Create every ``nn.Parameter`` on the ``meta`` device while the context is active.

    Each parameter is moved to ``meta`` as it is registered, so the initialisers that run after
    (kaiming etc.) cost nothing and an SD-1.4 MADM builds in seconds without allocating its
    weights. Buffers stay real; call ``module.to('meta')`` afterwards.
    """
    register = nn.Module.register_parameter

    def register_on_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        register(module, name, param)
        if param is not None and param.device.type != 'meta':
            module._parameters[name] = nn.Parameter(param.to('meta'),
                                                    requires_grad=param.requires_grad)

    nn.Module.register_parameter = register_on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = register


def benchmark_model_cfg(cfg: Config, settings: BenchmarkSettings, *,
                        gradient_checkpointing: bool | None = None) -> ConfigDict:
    """The config's ``model`` with the backbone preset and the speed levers substituted.

    Args:
        cfg (Config): A task config such as ``configs/madm/rgb2event.py``.
        settings (BenchmarkSettings): Preset and levers.
        gradient_checkpointing (bool | None): Overrides ``settings.gradient_checkpointing``
            (the FLOP-count copy turns it off). Defaults to None.

    Returns:
        ConfigDict: A model config that builds without any SD folder or dataset.
    """
    model_cfg = copy.deepcopy(cfg.model)
    backbone = model_cfg.backbone
    if backbone.get('type') != 'StableDiffusionBackbone':
        raise ValueError('The benchmark needs a config whose model.backbone is a '
                         f"StableDiffusionBackbone, got {backbone.get('type')!r}.")
    backbone.pop('pretrained', None)
    backbone.update(preset=settings.preset, attention=settings.attention,
                    channels_last=settings.channels_last)
    if gradient_checkpointing is None:
        gradient_checkpointing = settings.gradient_checkpointing
    if gradient_checkpointing is not None:
        backbone.gradient_checkpointing = gradient_checkpointing
    if settings.vae_dtype is not None:
        backbone.vae_dtype = settings.vae_dtype
    if settings.group_norm_autocast:
        backbone.group_norm_precision = 'autocast'
        if model_cfg.get('neck', {}).get('type') == 'BottleneckProjection':
            model_cfg.neck.group_norm_precision = 'autocast'
    if settings.non_blocking_input:
        model_cfg.data_preprocessor.non_blocking = True
    if settings.class_mix_on_device:
        model_cfg.class_mix = dict(model_cfg.get('class_mix') or {}, on_device=True)

    # The neck's inputs follow the preset's channels; read them from a parameter-free build.
    with meta_parameters():
        probe = MODELS.build(copy.deepcopy(backbone))
    channels, strides = list(probe.out_channels), list(probe.out_strides)
    del probe
    head = model_cfg.decode_head
    if model_cfg.get('neck') is not None:
        model_cfg.neck.in_channels = channels
        if settings.preset == 'tiny':
            model_cfg.neck.update(out_channels=TINY_NECK_HEAD['neck_out_channels'],
                                  bottleneck_channels=TINY_NECK_HEAD['bottleneck_channels'],
                                  norm_cfg=dict(type='GN',
                                                num_groups=TINY_NECK_HEAD['neck_norm_groups']))
        head_in = list(model_cfg.neck.out_channels)
    else:
        head_in = channels
    head.in_channels = head_in
    if settings.preset == 'tiny':
        head.update(channels=TINY_NECK_HEAD['head_channels'],
                    embed_dims=TINY_NECK_HEAD['embed_dims'])
    if settings.head_with_cp:
        head.with_cp = True
    if settings.head_resize is not None:
        head.resize_impl = settings.head_resize
    if settings.fusion_stride is not None:
        index = head.get('in_index') or list(range(len(head_in)))
        head.update(fusion_stride=settings.fusion_stride, in_strides=[strides[i] for i in index])
    return model_cfg


def build_benchmark_model(cfg: Config, settings: BenchmarkSettings,
                          device: str | torch.device | None = None, *,
                          gradient_checkpointing: bool | None = None) -> nn.Module:
    """Build the segmentor of :func:`benchmark_model_cfg`, in train mode.

    Args:
        cfg (Config): The task config.
        settings (BenchmarkSettings): Preset, levers and seed.
        device (str | torch.device | None): Where to put it; ``'meta'`` builds without
            allocating any weight (:func:`meta_parameters`). Defaults to None, i.e.
            ``settings.device``.
        gradient_checkpointing (bool | None): See :func:`benchmark_model_cfg`.

    Returns:
        nn.Module: The model, initialised with ``torch.manual_seed(settings.seed)``.
    """
    device = torch.device(settings.device if device is None else device)
    init_default_scope('mmseg')
    model_cfg = benchmark_model_cfg(cfg, settings, gradient_checkpointing=gradient_checkpointing)
    torch.manual_seed(settings.seed)
    if device.type == 'meta':
        with meta_parameters():
            model = MODELS.build(model_cfg)
    else:
        model = MODELS.build(model_cfg)
        model.init_weights()
    return model.to(device).train()


# --------------------------------------------------------------------------- data
def synthetic_batch(batch_size: int, size: tuple[int, int], num_classes: int,
                    seed: int = 0, ignore_index: int = 255) -> dict:
    """A collated UDA batch of random source/target pairs, as ``UDADataset`` yields it.

    Images are uint8 ``(3, H, W)``; each source label is a random class per 16×16 cell (regions,
    so ClassMix pastes blobs as with real labels) with the top 8 rows ignored.

    Args:
        batch_size (int): Pairs ``N``.
        size (tuple[int, int]): ``(H, W)``.
        num_classes (int): Classes ``C`` of the labels.
        seed (int): Seed of the draws. Defaults to 0.
        ignore_index (int): Label of the ignored rows. Defaults to 255.

    Returns:
        dict: ``dict(source=dict(inputs=[...], data_samples=[...]), target=dict(...))`` with
        ``N`` entries each; source samples carry ``gt_sem_seg`` (1, H, W).
    """
    g = torch.Generator().manual_seed(seed)
    h, w = size
    meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w))

    def images() -> list[Tensor]:
        return [torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8)
                for _ in range(batch_size)]

    sources, targets = [], []
    for _ in range(batch_size):
        cells = torch.randint(0, num_classes, (1, 1, -(-h // 16), -(-w // 16)), generator=g)
        label = cells.repeat_interleave(16, 2).repeat_interleave(16, 3)[0, :, :h, :w].clone()
        label[:, :8] = ignore_index
        sample = SegDataSample(metainfo=dict(meta))
        sample.gt_sem_seg = PixelData(data=label)
        sources.append(sample)
        targets.append(SegDataSample(metainfo=dict(meta)))
    return dict(source=dict(inputs=images(), data_samples=sources),
                target=dict(inputs=images(), data_samples=targets))


def pin_batch(batch: dict) -> dict:
    """Copy a batch into pinned memory, as ``DataLoader(pin_memory=True)`` hands it over.

    Pinning needs a CUDA device.

    Args:
        batch (dict): A batch of :func:`synthetic_batch`; left unchanged.

    Returns:
        dict: The same structure with pinned images and labels.
    """
    return {branch: dict(inputs=[pinned(img) for img in part['inputs']],
                         data_samples=[pinned(sample) for sample in part['data_samples']])
            for branch, part in batch.items()}


# --------------------------------------------------------------------------- optimiser
class CPUAutocastOptimWrapper(OptimWrapper):
    """``AmpOptimWrapper``'s behaviour on a CPU: autocast, and a GradScaler for fp16.

    Args:
        dtype (torch.dtype | None): Autocast dtype; None runs fp32.
        **kwargs: :class:`mmengine.optim.OptimWrapper` arguments (``optimizer``,
            ``clip_grad``, ...).
    """

    def __init__(self, dtype: torch.dtype | None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.cast_dtype = dtype
        self.loss_scaler = torch.amp.GradScaler('cpu', enabled=dtype == torch.float16)

    def backward(self, loss: Tensor, **kwargs) -> None:
        self.loss_scaler.scale(loss).backward(**kwargs)
        self._inner_count += 1

    def step(self, **kwargs) -> None:
        if self.clip_grad_kwargs:
            self.loss_scaler.unscale_(self.optimizer)
            self._clip_grad()
        self.loss_scaler.step(self.optimizer, **kwargs)
        self.loss_scaler.update()

    @contextlib.contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        with super().optim_context(model), torch.autocast(
                'cpu', dtype=self.cast_dtype or torch.bfloat16,
                enabled=self.cast_dtype is not None):
            yield


def build_benchmark_optim_wrapper(model: nn.Module, cfg: Config,
                                  settings: BenchmarkSettings) -> OptimWrapper:
    """The task's optimiser (AdamW, param-wise decay, grad clip) with the chosen precision.

    Args:
        model (nn.Module): The model from :func:`build_benchmark_model`.
        cfg (Config): The task config (its ``optim_wrapper``).
        settings (BenchmarkSettings): ``amp``, ``fused_adamw`` and ``device``.

    Returns:
        OptimWrapper: ``AmpOptimWrapper`` on CUDA with autocast, a plain ``OptimWrapper`` for
        ``amp='none'``, :class:`CPUAutocastOptimWrapper` on CPU with autocast. With
        ``settings.deferred_log`` its gradient norm goes to a
        :class:`~madm.utils.deferred_scalars.DeferredScalars` that nothing reads (a benchmark
        logs nothing), instead of to the message hub.
    """
    wrapper_cfg = copy.deepcopy(cfg.optim_wrapper)
    for key in ('type', 'dtype', 'loss_scale'):
        wrapper_cfg.pop(key, None)
    if settings.fused_adamw:
        wrapper_cfg.optimizer.fused = True
    if settings.merge_param_groups:
        wrapper_cfg.constructor = 'MergedParamGroupsOptimWrapperConstructor'
    elif settings.merge_param_groups is not None:
        wrapper_cfg.pop('constructor', None)  # mmengine's default: a group per parameter
    with _quiet_logger():  # the param-wise builder logs a line per SD-1.4 norm and bias
        wrapper = _build_optim_wrapper(model, wrapper_cfg, settings)
    if settings.deferred_log:
        # Never flushed: it keeps one 0-d tensor per step, a few bytes over a benchmark.
        defer_grad_norm_log(wrapper, DeferredScalars())
    return wrapper


@contextlib.contextmanager
def _quiet_logger() -> Iterator[None]:
    logger = MMLogger.get_current_instance()
    level = logger.level
    # ERROR: the builder also warns once per frozen parameter (every VAE and teacher weight).
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _build_optim_wrapper(model: nn.Module, wrapper_cfg: ConfigDict,
                         settings: BenchmarkSettings) -> OptimWrapper:
    dtype = _AMP_DTYPES[settings.amp]
    on_cuda = torch.device(settings.device).type == 'cuda'
    if dtype is not None and on_cuda:
        # bf16 needs no loss scaling; fp16 keeps the reference's dynamic scaler.
        loss_scale = 'dynamic' if dtype == torch.float16 else dict(enabled=False)
        wrapper_cfg.update(type='AmpOptimWrapper', dtype=dtype, loss_scale=loss_scale)
        return build_optim_wrapper(model, wrapper_cfg)
    wrapper = build_optim_wrapper(model, dict(wrapper_cfg, type='OptimWrapper'))
    if dtype is None:
        return wrapper
    return CPUAutocastOptimWrapper(dtype, optimizer=wrapper.optimizer,
                                   clip_grad=wrapper_cfg.get('clip_grad'))


# --------------------------------------------------------------------------- FLOPs
def count_train_step_flops(model: nn.Module, batch: dict) -> int:
    """FLOPs of one training step's forward and backward (every pass of the step).

    Runs preprocessing, ``loss``, ``parse_losses`` and ``backward`` under
    :class:`FlopCounterMode`; the optimizer step adds no counted FLOPs and is skipped, and the
    gradients are cleared afterwards. Works on real tensors and on a model built on ``meta``.

    Args:
        model (nn.Module): A MADM model in train mode.
        batch (dict): A collated batch (:func:`synthetic_batch`).

    Returns:
        int: Total FLOPs (a multiply-add counts 2).
    """
    with FlopCounterMode(display=False, custom_mapping=CORRECTED_FLOP_FORMULAS) as counter, \
            MetaPlaceholders():
        data = model.data_preprocessor(batch, True)
        losses = model._run_forward(data, mode='loss')
        loss, _ = model.parse_losses(losses)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def count_flops_on_meta(cfg: Config, settings: BenchmarkSettings) -> int:
    """Model FLOPs per iteration at ``settings``' preset, batch and size, without running it.

    Gradient checkpointing (UNet and head) is turned off, so recomputation is not counted
    (model FLOPs), and the head resizes with ``F.interpolate`` whatever
    ``settings.head_resize`` says (the counter sees the matmul form's multiply-adds, not
    interpolation's: the same model would count differently).

    Args:
        cfg (Config): The task config.
        settings (BenchmarkSettings): Preset, batch size, size and levers.

    Returns:
        int: FLOPs of one training iteration.
    """
    settings = dataclasses.replace(settings, head_with_cp=False, head_resize='interpolate')
    model = build_benchmark_model(cfg, settings, 'meta', gradient_checkpointing=False)
    batch = synthetic_batch(settings.batch_size, settings.size, model.num_classes, settings.seed)
    _set_iter(1)
    return count_train_step_flops(model, batch)


def audit_host_syncs_on_meta(cfg: Config, settings: BenchmarkSettings) -> dict:
    """The calls of a training step that would make the host wait for a CUDA device.

    :class:`~madm.utils.host_sync_audit.HostSyncAudit` around ``model.train_step`` of the model
    built on ``meta`` at ``settings``' preset, batch and size: the second step, as the first
    moves the noise schedule to the device once (diffusers' ``add_noise``). It runs without
    autocast, compilation and fused AdamW (meta has none of them): bf16 autocast and fused
    AdamW add no sync; fp16's GradScaler adds its check for infinite gradients. Non-blocking
    copies count as free, as from pinned memory (``non_blocking_input`` pins the batch on
    CUDA). A check of the code on any machine; :func:`count_host_syncs` measures the same on
    a GPU.

    Args:
        cfg (Config): The task config.
        settings (BenchmarkSettings): Preset, batch size, size and levers.

    Returns:
        dict: :meth:`HostSyncAudit.summary` (``total``, ``where``, ``why``).
    """
    settings = dataclasses.replace(settings, amp='none', compile=False, compile_head=False,
                                   compile_vae=False, fused_adamw=False)
    model = build_benchmark_model(cfg, settings, 'meta')
    optim_wrapper = build_benchmark_optim_wrapper(model, cfg, settings)
    batch = synthetic_batch(settings.batch_size, settings.size, model.num_classes, settings.seed)
    audit = HostSyncAudit()
    _second_meta_step_under(audit, model, optim_wrapper, batch)
    return audit.summary()


def _second_meta_step_under(mode: MetaPlaceholders, model: nn.Module,
                            optim_wrapper: OptimWrapper, batch: dict) -> None:
    """Two training steps on ``meta``, the second under ``mode``: the first creates the
    optimizer's state and moves the noise schedule to the device (diffusers' ``add_noise``),
    once, as a GPU run's warm-up does."""
    _set_iter(1)
    with MetaPlaceholders():
        model.train_step(batch, optim_wrapper)
    _set_iter(2)
    with mode:
        model.train_step(batch, optim_wrapper)


class MetaAutocastOptimWrapper(OptimWrapper):
    """``AmpOptimWrapper``'s autocast for a model on ``meta``: CUDA's casts, emulated.

    :class:`~madm.utils.meta_memory.EmulatedCUDAAutocast` around the forward, as
    ``AmpOptimWrapper.optim_context`` puts ``torch.autocast('cuda')`` there, and around
    backward without the weight-cast cache, for what gradient checkpointing recomputes (it
    restores the forward's autocast state). No loss scaling: fp16's GradScaler keeps a few
    scalars and unscales the gradients in place.

    Args:
        dtype (torch.dtype | None): Autocast dtype; None for a float32 step (no casts, only
            the fused attention).
        fused_attention (bool): SDPA as the fused CUDA kernels run it. Defaults to True.
        **kwargs: :class:`mmengine.optim.OptimWrapper` arguments.
    """

    def __init__(self, dtype: torch.dtype | None, *, fused_attention: bool = True,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.cast_dtype = dtype
        self.fused_attention = fused_attention
        self._model: nn.Module | None = None

    def backward(self, loss: Tensor, **kwargs) -> None:
        if kwargs:
            raise ValueError(f'MetaAutocastOptimWrapper.backward takes no options, got {kwargs}')
        EmulatedCUDAAutocast(self.cast_dtype, fused_attention=self.fused_attention,
                             cache_weight_casts=False, modules=self._model).backward(loss)
        self._inner_count += 1

    @contextlib.contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        self._model = model
        with super().optim_context(model), EmulatedCUDAAutocast(
                self.cast_dtype, fused_attention=self.fused_attention, modules=model):
            yield


def _meta_step_setup(cfg: Config, settings: BenchmarkSettings, *,
                     fused_as: Literal['per-parameter', 'foreach']
                     ) -> tuple[nn.Module, OptimWrapper, dict, bool]:
    """The model on ``meta``, a :class:`MetaAutocastOptimWrapper` and a batch, for a step.

    Fused AdamW (``settings.fused_adamw`` or the config's) has no ``meta`` kernel; it runs one
    parameter at a time (``fused_as='per-parameter'``) or in the ``foreach`` form. Returns the
    model, the wrapper, the batch and whether AdamW was meant to be fused.
    """
    model = build_benchmark_model(cfg, settings, 'meta')
    # The plain wrapper only provides the optimizer: the grad-norm log is set up once, below.
    wrapper = build_benchmark_optim_wrapper(
        model, cfg, dataclasses.replace(settings, amp='none', deferred_log=False))
    fused = settings.fused_adamw or bool(wrapper.optimizer.defaults.get('fused'))
    for group in wrapper.optimizer.param_groups:
        group.update(fused=False, foreach=not (fused and fused_as == 'per-parameter'))
    # Also for float32: meta's SDPA falls back to the math kernel, CUDA's does not.
    wrapper = MetaAutocastOptimWrapper(
        _AMP_DTYPES[settings.amp], fused_attention=settings.attention == 'sdpa',
        optimizer=wrapper.optimizer, clip_grad=cfg.optim_wrapper.get('clip_grad'))
    if settings.deferred_log:
        defer_grad_norm_log(wrapper, DeferredScalars())
    batch = synthetic_batch(settings.batch_size, settings.size, model.num_classes, settings.seed)
    return model, wrapper, batch, fused


def estimate_peak_memory_on_meta(cfg: Config, settings: BenchmarkSettings) -> dict:
    """Peak CUDA memory of a training step at ``settings``, estimated without a GPU.

    The model is built on ``meta`` with ``settings``' preset, batch, size and levers; one step
    runs first (it creates the optimizer's state), then a second one under
    :class:`~madm.utils.meta_memory.LiveMemoryTracker`, which counts what is live before the
    step (weights, EMA teacher, optimizer state) and every tensor the step allocates, each
    rounded to the allocator's 512-byte blocks. That is the counterpart of
    ``torch.cuda.max_memory_allocated`` over the timed iterations of :func:`run_benchmark`.
    Autocast is CUDA's, emulated (:class:`MetaAutocastOptimWrapper`); SDPA keeps what the
    fused kernels keep. AdamW runs as CUDA's default, the ``foreach`` form with its
    whole-group temporaries; ``fused_adamw`` runs it one parameter at a time, which, like the
    fused kernel, needs no such temporaries. Not counted: cuBLAS/cuDNN workspaces and
    fragmentation (module docstring of :mod:`madm.utils.meta_memory`).

    Args:
        cfg (Config): The task config.
        settings (BenchmarkSettings): Preset, batch size, size and levers. Compilation is
            refused: what inductor keeps for backward is not modelled.

    Returns:
        dict: ``peak_bytes`` (the estimate), ``resident_bytes`` (live when the step starts),
        ``peak_op`` (the operator at the peak), ``model_switches`` (the memory switches of the
        model as built, the config's where ``settings`` leaves them), ``params_bytes``,
        ``trainable_params``.
    """
    if _compiled(settings):
        raise ValueError('The meta memory estimate does not model torch.compile; estimate '
                         'the uncompiled variant (compile usually needs less).')
    gc.collect()
    # meta has no fused AdamW kernel; one parameter at a time needs no more memory than it.
    model, wrapper, batch, _ = _meta_step_setup(cfg, settings, fused_as='per-parameter')
    tracker = LiveMemoryTracker()
    _second_meta_step_under(tracker, model, wrapper, batch)
    params = list(model.parameters())
    summary = dict(peak_bytes=tracker.peak, resident_bytes=tracker.resident,
                   peak_op=tracker.peak_op, model_switches=_model_switches(model),
                   params_bytes=sum(p.numel() * p.element_size() for p in params),
                   trainable_params=sum(p.numel() for p in params if p.requires_grad))
    del model, wrapper, tracker
    gc.collect()
    return summary


def _model_switches(model: nn.Module) -> dict:
    """The memory and speed switches of a built model (the config's where settings leave
    them)."""
    backbone, head = model.backbone, model.decode_head
    return dict(gradient_checkpointing=backbone.unet.is_gradient_checkpointing,
                vae_dtype=str(backbone.vae.dtype).removeprefix('torch.'),
                fusion_stride=getattr(head, 'fusion_stride', None),
                head_resize=getattr(head, 'resize_impl', None),
                head_with_cp=getattr(head, 'with_cp', None))


def _compiled(settings: BenchmarkSettings) -> bool:
    return settings.compile or settings.compile_head or settings.compile_vae


def estimate_roofline_on_meta(cfg: Config, settings: BenchmarkSettings,
                              device: str = 'h100') -> dict:
    """A lower bound on a training step's GPU time, and the MFU it allows, without a GPU.

    The second step of the model built on ``meta`` (as :func:`estimate_peak_memory_on_meta`,
    with CUDA autocast emulated) runs under
    :class:`~madm.utils.roofline.RooflineCounter`: every operator's FLOPs and least memory
    traffic, turned into its roofline time on ``device``'s datasheet peaks, by phase (forward,
    backward, optimizer: gradient clipping, AdamW, ``zero_grad``) and category. Fused AdamW
    counts as one pass over parameters, gradients and moments; otherwise the ``foreach``
    operators count as run. The MFU ceilings use the model FLOPs of :func:`count_flops_on_meta`
    (no recomputation), as the measured MFU does.

    Args:
        cfg (Config): The task config.
        settings (BenchmarkSettings): Preset, batch size, size and levers. Compilation is
            refused (its fusions are what the compute-only bound stands for).
        device (str): A key of :data:`~madm.utils.roofline.DEVICE_SPECS`. Defaults to 'h100'.

    Returns:
        dict: :meth:`RooflineCounter.summary` plus ``model_switches``.
    """
    if device not in DEVICE_SPECS:
        raise ValueError(f'device must be one of {sorted(DEVICE_SPECS)}, got {device!r}.')
    if _compiled(settings):
        raise ValueError('The roofline bound does not model torch.compile; its compute-only '
                         'bound is what perfect fusion could reach.')
    gc.collect()
    model_flops = count_flops_on_meta(cfg, settings)
    model, wrapper, batch, fused = _meta_step_setup(cfg, settings, fused_as='foreach')
    counter = RooflineCounter(DEVICE_SPECS[device])
    with _counted_phases(counter, wrapper, fused), _foreach_clipping_on_meta(), \
            count_parts(counter, model_parts(model)):
        _second_meta_step_under(counter, model, wrapper, batch)
    summary = dict(counter.summary(model_flops), model_switches=_model_switches(model))
    del model, wrapper, counter
    gc.collect()
    return summary


def model_parts(model: nn.Module) -> dict[nn.Module, str]:
    """The parts of a MADM model a roofline count is broken down by: UNet, the frozen VAE's
    encoder and decoder, and the student's and the teacher's neck and head."""
    from diffusers.models.autoencoders.vae import Decoder, Encoder
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
    from mmseg.models.decode_heads.decode_head import BaseDecodeHead

    from madm.models.necks import BottleneckProjection

    kinds = ((UNet2DConditionModel, 'UNet'), (Encoder, 'VAE encoder (frozen)'),
             (Decoder, 'VAE decoder (frozen)'), (BottleneckProjection, 'neck'),
             (BaseDecodeHead, 'decode head'))
    parts: dict[nn.Module, str] = {}
    for name, module in model.named_modules():
        for kind, part in kinds:
            if isinstance(module, kind):
                parts[module] = f'teacher {part}' if name.startswith('teacher.') else part
    return parts


@contextlib.contextmanager
def _foreach_clipping_on_meta() -> Iterator[None]:
    """``clip_grad_norm_`` in its ``foreach`` form on ``meta``, as it runs on CUDA (a few
    ``_foreach_norm`` calls) rather than one ``vector_norm`` per gradient, which it falls back
    to on devices without foreach kernels."""
    module = torch.nn.utils.clip_grad
    names = ('_device_has_foreach_support', '_has_foreach_support')
    originals = {name: getattr(module, name) for name in names}

    def with_meta(original: Callable) -> Callable:
        def supported(*args, **kwargs) -> bool:
            device = kwargs.get('device', args[-1] if args else None)
            return torch.device(device).type == 'meta' or original(*args, **kwargs)
        return supported

    for name in names:
        setattr(module, name, with_meta(originals[name]))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(module, name, original)


def time_optimizer_overhead(cfg: Config, settings: BenchmarkSettings,
                            repeats: int = 20) -> dict:
    """The host's fixed cost of the optimizer's part of a step (clipping, AdamW, zero_grad).

    The parameter groups of the task's optimizer (``paramwise_cfg``, and
    ``settings.merge_param_groups``) for the model at ``settings.preset``, with every
    parameter replaced by a one-element CPU tensor: ``optim_wrapper.step()`` (gradient
    clipping, AdamW) and ``zero_grad()`` then do almost no arithmetic, and their time is the
    Python and dispatcher work that a GPU step also spends on the host, per group and
    parameter, before its kernels launch (the launches add to it there).

    Args:
        cfg (Config): The task config.
        settings (BenchmarkSettings): Preset, ``merge_param_groups`` and ``fused_adamw``
            (else AdamW runs in its ``foreach`` form, CUDA's default).
        repeats (int): Timed repetitions after one warm-up. Defaults to 20.

    Returns:
        dict: ``seconds`` (median), ``param_groups``, ``params``, ``form`` (fused or foreach).
    """
    model = build_benchmark_model(cfg, settings, 'meta')
    meta_wrapper = build_benchmark_optim_wrapper(
        model, cfg, dataclasses.replace(settings, amp='none', deferred_log=False))
    optimizer = meta_wrapper.optimizer
    fused = settings.fused_adamw or bool(optimizer.defaults.get('fused'))
    groups = [dict({k: v for k, v in group.items() if k != 'params'}, fused=fused,
                   foreach=not fused,
                   params=[torch.zeros(1, requires_grad=True) for _ in group['params']])
              for group in optimizer.param_groups]
    del model, meta_wrapper, optimizer
    clip_grad = cfg.optim_wrapper.get('clip_grad')
    # clip_grad_norm_'s foreach form, as on CUDA (a CPU falls back to a norm per tensor)
    wrapper = OptimWrapper(torch.optim.AdamW(groups),
                           clip_grad=dict(clip_grad, foreach=True) if clip_grad else None)
    defer_grad_norm_log(wrapper, DeferredScalars())  # no float() of the norm in the step
    params = [p for group in groups for p in group['params']]
    times = []
    for _ in range(repeats + 1):
        for param in params:
            param.grad = torch.ones_like(param)
        start = time.perf_counter()
        wrapper.step()
        wrapper.zero_grad()
        times.append(time.perf_counter() - start)
    return dict(seconds=_median(times[1:]), param_groups=len(groups), params=len(params),
                form='fused' if fused else 'foreach')


@contextlib.contextmanager
def _counted_phases(counter: RooflineCounter, wrapper: OptimWrapper,
                    fused: bool) -> Iterator[None]:
    """Tell ``counter`` which phase runs: backward in ``wrapper.backward``, the optimizer in
    ``wrapper.step`` (clipping and AdamW) and ``zero_grad``. A fused AdamW update is added as
    one pass instead of the ``foreach`` operators that stand in for it on ``meta``."""
    originals = dict(backward=wrapper.backward, step=wrapper.step,
                     zero_grad=wrapper.zero_grad, optimizer_step=wrapper.optimizer.step)
    # instance attributes to put back as they were (none, usually: the classes' methods)
    saved = {name: vars(wrapper)[name] for name in ('backward', 'step', 'zero_grad')
             if name in vars(wrapper)}
    saved_step = vars(wrapper.optimizer).get('step')

    def in_phase(name: str, method: Callable) -> Callable:
        def run(*args, **kwargs):
            with counter.phase(name):
                return method(*args, **kwargs)
        return run

    def fused_step(*args, **kwargs):
        with counter.not_counted():
            result = originals['optimizer_step'](*args, **kwargs)
        counter.add_fused_adamw([group['params'] for group in wrapper.optimizer.param_groups])
        return result

    wrapper.backward = in_phase('backward', originals['backward'])
    wrapper.step = in_phase('optimizer', originals['step'])
    wrapper.zero_grad = in_phase('optimizer', originals['zero_grad'])
    if fused:
        wrapper.optimizer.step = fused_step
    try:
        yield
    finally:
        for name in ('backward', 'step', 'zero_grad'):
            if name in saved:
                setattr(wrapper, name, saved[name])
            else:
                delattr(wrapper, name)  # the class's method again
        if fused:
            if saved_step is not None:
                wrapper.optimizer.step = saved_step
            else:
                del wrapper.optimizer.step


def format_memory_estimate(summary: dict, settings: BenchmarkSettings) -> str:
    """A few lines on :func:`estimate_peak_memory_on_meta`'s result."""
    gib = 2 ** 30
    return '\n'.join([
        f'Peak memory of a training step (meta estimate, {settings.amp}, batch '
        f'{settings.batch_size}, {settings.size[0]}x{settings.size[1]}): '
        f"{summary['peak_bytes'] / gib:.2f} GiB",
        f"  live when the step starts (weights, EMA teacher, optimizer state): "
        f"{summary['resident_bytes'] / gib:.2f} GiB; weights alone "
        f"{summary['params_bytes'] / gib:.2f} GiB ({summary['trainable_params']:,} trainable)",
        f"  reached at: {summary['peak_op']}",
        '  model switches: ' + ', '.join(f'{key}={value}'
                                         for key, value in summary['model_switches'].items()),
        '  not counted: cuBLAS/cuDNN workspaces, fragmentation (max_memory_reserved)']
        + (['  float32: not checked against a GPU (17 % under the one fp32 measurement; '
            'docs/benchmarks.md)'] if settings.amp == 'none' else []))


def estimate_memory_of_variants(cfg: Config, base: BenchmarkSettings,
                               variants: tuple[tuple[str, dict], ...] = (), *,
                               on_result: Callable[[list[dict]], None] | None = None
                               ) -> list[dict]:
    """:func:`estimate_peak_memory_on_meta` of each variant (``(name, overrides)``).

    Compiled variants, which the estimate does not model, are recorded as such; any other
    failure propagates.

    Args:
        cfg (Config): The task config.
        base (BenchmarkSettings): Settings each variant overrides.
        variants (tuple[tuple[str, dict], ...]): Names and overrides, e.g. ``LEVER_SWEEP``.
        on_result (Callable | None): Called with the list so far after each variant.

    Returns:
        list[dict]: Per variant, ``name``, ``settings`` and the estimate's keys, or
        ``not_modelled`` with the reason.
    """
    return _each_variant(base, variants, 'the meta estimate', on_result,
                         lambda settings: estimate_peak_memory_on_meta(cfg, settings))


def _each_variant(base: BenchmarkSettings, variants: tuple[tuple[str, dict], ...],
                  what: str, on_result: Callable[[list[dict]], None] | None,
                  estimate: Callable[[BenchmarkSettings], dict]) -> list[dict]:
    """``estimate`` of each variant's settings; compiled ones are recorded as not modelled by
    ``what``, any other failure propagates."""
    results = []
    for name, overrides in variants or LEVER_SWEEP:
        settings = dataclasses.replace(base, **overrides)
        entry = dict(name=name, settings=asdict(settings))
        if _compiled(settings):
            entry['not_modelled'] = f'torch.compile is not modelled by {what}'
        else:
            entry.update(estimate(settings))
        results.append(entry)
        if on_result is not None:
            on_result(results)
    return results


def format_memory_estimates_markdown(results: list[dict]) -> str:
    """A markdown table of :func:`estimate_memory_of_variants`' results."""
    gib = 2 ** 30
    lines = ['| variant | estimated peak GiB (meta) | live at step start GiB |', '|---|---|---|']
    for entry in results:
        if 'not_modelled' in entry:
            lines.append(f"| {entry['name']} | not modelled (compiled) | |")
        else:
            lines.append(f"| {entry['name']} | {entry['peak_bytes'] / gib:.2f} | "
                         f"{entry['resident_bytes'] / gib:.2f} |")
    return '\n'.join(lines)


def _percent(value: float | None) -> str:
    return 'n/a' if value is None else f'{value:.1%}'


def format_roofline(summary: dict, settings: BenchmarkSettings) -> str:
    """Markdown on :func:`estimate_roofline_on_meta`'s result: headline, then by category,
    phase, model part and top operators."""
    def row(name: str, t: dict) -> str:
        share = t['seconds'] / summary['eager_bound_s'] if summary['eager_bound_s'] else 0.0
        return (f"| {name} | {t['ops']:,} | {t['kernels']:,} | {t['flops'] / 1e12:.2f} | "
                f"{t['bytes'] / 1e9:.1f} | {t['seconds'] * 1e3:.1f} | {share:.0%} | "
                f"{t['compute_seconds'] * 1e3:.1f} |")

    header = ('| {} | operators | kernels | TFLOP | GB moved | bound ms | share | '
              'compute-only ms |\n|---|---|---|---|---|---|---|---|')
    lines = [
        f"Roofline bound of a training step on {summary['device']} (meta count; "
        f"{settings.amp}, batch {settings.batch_size}, {settings.size[0]}x{settings.size[1]}):",
        f"  model FLOPs {summary['model_flops'] / 1e12:.2f} T (executed, recomputation "
        f"included: {summary['executed_flops'] / 1e12:.2f} T); least memory traffic "
        f"{summary['bytes'] / 1e9:.1f} GB; {summary['kernels']:,} kernels",
        f"  eager bound (every operator at its roofline): "
        f"{summary['eager_bound_s'] * 1e3:.1f} ms, MFU ceiling "
        f"{_percent(summary['mfu_ceiling_eager'])}",
        f"  compute-only bound (all else fused away): {summary['compute_bound_s'] * 1e3:.1f} "
        f"ms, MFU ceiling {_percent(summary['mfu_ceiling_fused'])}",
        '  model switches: ' + ', '.join(f'{key}={value}'
                                         for key, value in summary['model_switches'].items()),
        '  not counted: launch overhead and host gaps, kernels below their roofline, caches',
        '', header.format('category')]
    lines += [row(name, t) for name, t in summary['by_category'].items()]
    lines += ['', header.format('phase')]
    lines += [row(name, t) for name, t in summary['by_phase'].items()]
    # The configs' teacher runs the student's UNet and VAE. Backward counts for the part whose
    # forward created each autograd node; the seed gradient and the losses' nodes are 'other'.
    lines += ['', header.format('phase: model part')]
    lines += [row(name, t) for name, t in summary['by_part'].items()]
    lines += ['', header.format('operator')]
    lines += [row(f"`{t['op']}`", t) for t in summary['top_ops']]
    return '\n'.join(lines)


def estimate_roofline_of_variants(cfg: Config, base: BenchmarkSettings,
                                  variants: tuple[tuple[str, dict], ...] = (), *,
                                  device: str = 'h100',
                                  on_result: Callable[[list[dict]], None] | None = None
                                  ) -> list[dict]:
    """:func:`estimate_roofline_on_meta` of each variant (``(name, overrides)``); compiled
    variants are recorded as not modelled."""
    return _each_variant(
        base, variants, 'the roofline bound', on_result,
        lambda settings: estimate_roofline_on_meta(cfg, settings, device))


def format_roofline_variants_markdown(results: list[dict]) -> str:
    """A markdown table of :func:`estimate_roofline_of_variants`' results."""
    lines = ['| variant | model TFLOP | kernels | GB moved | eager bound ms | MFU ceiling, eager '
             '| compute-only bound ms | MFU ceiling, fused |', '|---|---|---|---|---|---|---|---|']
    for entry in results:
        if 'not_modelled' in entry:
            lines.append(f"| {entry['name']} | not modelled (compiled) | | | | | | |")
            continue
        lines.append(
            f"| {entry['name']} | {entry['model_flops'] / 1e12:.2f} | {entry['kernels']:,} | "
            f"{entry['bytes'] / 1e9:.1f} | {entry['eager_bound_s'] * 1e3:.1f} | "
            f"{_percent(entry['mfu_ceiling_eager'])} | {entry['compute_bound_s'] * 1e3:.1f} | "
            f"{_percent(entry['mfu_ceiling_fused'])} |")
    return '\n'.join(lines)


def format_host_sync_audit(summary: dict) -> str:
    """A markdown table of :func:`audit_host_syncs_on_meta`'s summary."""
    lines = [f"Host syncs per training step (meta audit): {summary['total']}", '',
             '| calls | where | why |', '|---|---|---|']
    lines += [f"| {count} | `{where}` | {summary['why'][where]} |"
              for where, count in summary['where'].items()]
    return '\n'.join(lines)


# --------------------------------------------------------------------------- timing
def _set_iter(cur_iter: int) -> None:
    MessageHub.get_current_instance().update_info('iter', cur_iter)


def _timed(fn, device: torch.device) -> float:
    """Seconds of one call of ``fn``, synchronised on CUDA."""
    if device.type == 'cuda':
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end) / 1000.0
    start_s = time.perf_counter()
    fn()
    return time.perf_counter() - start_s


def run_train_step(model: nn.Module, optim_wrapper: OptimWrapper, batch: dict, *,
                   cudagraphs: bool = False) -> None:
    """One ``model.train_step``, as the Runner calls it.

    With CUDA graphs (compile mode ``'reduce-overhead'``) a new iteration is marked first:
    the graphs then reuse the previous step's output memory instead of keeping it alive.

    Args:
        model (nn.Module): The model, in train mode.
        optim_wrapper (OptimWrapper): Its optimiser wrapper.
        batch (dict): A collated batch.
        cudagraphs (bool): The model is compiled with CUDA graphs. Defaults to False.
    """
    if cudagraphs:
        torch.compiler.cudagraph_mark_step_begin()
    model.train_step(batch, optim_wrapper)


def time_train_steps(model: nn.Module, optim_wrapper: OptimWrapper, batch: dict, iters: int,
                     warmup: int, *, cudagraphs: bool = False) -> list[float]:
    """Run ``warmup + iters`` training steps and return the seconds of the last ``iters``.

    Args:
        model (nn.Module): The model, in train mode.
        optim_wrapper (OptimWrapper): From :func:`build_benchmark_optim_wrapper`.
        batch (dict): A collated batch, reused every iteration.
        iters (int): Timed iterations.
        warmup (int): Untimed iterations first.
        cudagraphs (bool): The model is compiled with CUDA graphs (:func:`run_train_step`).
            Defaults to False.

    Returns:
        list[float]: Seconds per timed iteration.
    """
    device = next(model.parameters()).device
    times = []
    for i in range(warmup + iters):
        _set_iter(i)
        seconds = _timed(
            lambda: run_train_step(model, optim_wrapper, batch, cudagraphs=cudagraphs), device)
        if i == warmup - 1 and device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(device)
        if i >= warmup:
            times.append(seconds)
    return times


@torch.no_grad()
def time_inference(model: nn.Module, batch_size: int, size: tuple[int, int], amp: AmpMode,
                   iters: int, warmup: int) -> float:
    """Images/s of the student's whole-image forward (backbone, neck, head, resize).

    Args:
        model (nn.Module): The model; put in eval mode here and back in train mode after.
        batch_size (int): Images per forward.
        size (tuple[int, int]): ``(H, W)``, multiples of 64.
        amp (Literal['bf16', 'fp16', 'none']): Autocast dtype.
        iters (int): Timed forwards (median).
        warmup (int): Untimed forwards first.

    Returns:
        float: ``batch_size / median seconds``.
    """
    device = next(model.parameters()).device
    dtype = _AMP_DTYPES[amp]
    img = torch.rand(batch_size, 3, *size, generator=torch.Generator().manual_seed(0)).to(device)
    metas = [dict(img_shape=size, ori_shape=size, pad_shape=size)] * batch_size
    model.eval()
    try:
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            times = [_timed(lambda: model.encode_decode(img, metas), device)
                     for _ in range(warmup + iters)][warmup:]
    finally:
        model.train()
    return batch_size / _median(times)


def count_host_syncs(model: nn.Module, optim_wrapper: OptimWrapper, batch: dict, *,
                     cudagraphs: bool = False) -> dict:
    """The calls of one CUDA training step that make the host wait for the GPU.

    Runs one ``train_step`` under ``torch.cuda.set_sync_debug_mode('warn')``, which warns at
    every synchronising call (``.item()``, ``torch.unique``, boolean indexing, ...), and groups
    the warnings by the Python line that raised them.

    Args:
        model (nn.Module): The model, on a CUDA device, in train mode.
        optim_wrapper (OptimWrapper): Its optimiser wrapper.
        batch (dict): A collated batch.
        cudagraphs (bool): See :func:`run_train_step`. Defaults to False.

    Returns:
        dict: ``total`` (int) and ``where`` (``'file:line'`` → count, most frequent first).
    """
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        torch.cuda.set_sync_debug_mode('warn')
        try:
            run_train_step(model, optim_wrapper, batch, cudagraphs=cudagraphs)
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    torch.cuda.synchronize()  # after the step, and not counted as one of its syncs
    where: dict[str, int] = {}
    for w in caught:
        if 'synchroniz' in str(w.message):
            key = f'{w.filename}:{w.lineno}'
            where[key] = where.get(key, 0) + 1
    ordered = dict(sorted(where.items(), key=lambda kv: -kv[1]))
    return dict(total=sum(ordered.values()), where=ordered)


def profile_train_step(model: nn.Module, optim_wrapper: OptimWrapper, batch: dict,
                       row_limit: int = 30, *, cudagraphs: bool = False) -> str:
    """The operators of one training step, by their own device time, as a text table.

    Args:
        model (nn.Module): The model, warmed up, in train mode.
        optim_wrapper (OptimWrapper): Its optimiser wrapper.
        batch (dict): A collated batch.
        row_limit (int): Operators listed. Defaults to 30.
        cudagraphs (bool): See :func:`run_train_step`. Defaults to False.

    Returns:
        str: ``torch.profiler``'s key-average table sorted by self device time (self CPU time
        on a CPU).
    """
    from torch.profiler import ProfilerActivity, profile
    device = next(model.parameters()).device
    activities = [ProfilerActivity.CPU]
    if device.type == 'cuda':
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        run_train_step(model, optim_wrapper, batch, cudagraphs=cudagraphs)
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
    averages = prof.key_averages()
    if device.type != 'cuda':
        return averages.table(sort_by='self_cpu_time_total', row_limit=row_limit)
    for key in ('self_device_time_total', 'self_cuda_time_total'):
        try:
            return averages.table(sort_by=key, row_limit=row_limit)
        except (AttributeError, KeyError, ValueError):
            continue
    return averages.table(row_limit=row_limit)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


# --------------------------------------------------------------------------- fp32 check
def loss_terms(model: nn.Module, batch: dict, amp: AmpMode, seed: int = 0, *,
               grad: bool = False, emulate_cuda_autocast: bool = False) -> dict[str, float]:
    """Loss terms of one step's forward under ``amp`` autocast, leaving the model as it was.

    The model state (weights, BN statistics, the adaptation generator) is restored afterwards
    and torch's RNG is seeded first, so two calls see the same batch, the same ClassMix,
    augmentation and DPLG draws, and the same dropout.

    Args:
        model (nn.Module): The model, in train mode (compiled or not).
        batch (dict): A collated batch.
        amp (Literal['bf16', 'fp16', 'none']): Autocast dtype, or ``'none'`` for fp32.
        seed (int): torch seed set before the run. Defaults to 0.
        grad (bool): Record the autograd graph, as a training step does (a compiled model
            then runs its training graph; nothing is back-propagated). Defaults to False.
        emulate_cuda_autocast (bool): On a CPU model, cast as CUDA autocast does
            (:class:`~madm.utils.meta_memory.EmulatedCUDAAutocast`) instead of running CPU
            autocast, whose rules differ. Defaults to False.

    Returns:
        dict[str, float]: loss key → value.
    """
    device = next(model.parameters()).device
    if emulate_cuda_autocast and device.type != 'cpu':
        raise ValueError(f'CUDA autocast is emulated for a CPU model; this one is on {device}.')
    dtype = _AMP_DTYPES[amp]
    if emulate_cuda_autocast:
        autocast = (EmulatedCUDAAutocast(dtype, device_type='cpu', modules=model)
                    if dtype is not None else contextlib.nullcontext())
    else:
        autocast = torch.autocast(device.type, dtype=dtype or torch.bfloat16,
                                  enabled=dtype is not None)
    with _seeded_and_restored(model, seed), torch.set_grad_enabled(grad), autocast:
        losses = model._run_forward(model.data_preprocessor(batch, True), mode='loss')
    return {k: float(v) for k, v in losses.items() if 'loss' in k}


@contextlib.contextmanager
def _seeded_and_restored(model: nn.Module, seed: int) -> Iterator[None]:
    """Seed torch and set iteration 1, then give the model its ``state_dict`` back."""
    state = {k: v.clone() for k, v in model.state_dict().items() if isinstance(v, Tensor)}
    extra = {k: v for k, v in model.state_dict().items() if not isinstance(v, Tensor)}
    torch.manual_seed(seed)
    _set_iter(1)
    try:
        yield
    finally:
        model.load_state_dict({**state, **extra})


def step_gradients(model: nn.Module, batch: dict, amp: AmpMode,
                   seed: int = 0) -> dict[str, Tensor]:
    """The parameter gradients of one step's total loss, without an optimizer update.

    Seeded as :func:`loss_terms`, so an eager and a compiled call see the same step; the
    ``state_dict`` (weights, BN statistics, the adaptation generator) is restored and every
    ``.grad`` is left None. Under fp16 the loss is scaled by 2**10 and the gradients unscaled,
    as a GradScaler would, so that small gradients do not flush to zero.

    Args:
        model (nn.Module): The model, in train mode (compiled or not).
        batch (dict): A collated batch.
        amp (Literal['bf16', 'fp16', 'none']): Autocast dtype, or ``'none'`` for fp32.
        seed (int): torch seed set before the run. Defaults to 0.

    Returns:
        dict[str, Tensor]: parameter name → float32 gradient, for the parameters that got one.
    """
    device = next(model.parameters()).device
    dtype = _AMP_DTYPES[amp]
    scale = 2.0 ** 10 if dtype is torch.float16 else 1.0
    model.zero_grad(set_to_none=True)
    try:
        with _seeded_and_restored(model, seed):
            with torch.autocast(device.type, dtype=dtype or torch.bfloat16,
                                enabled=dtype is not None):
                losses = model._run_forward(model.data_preprocessor(batch, True), mode='loss')
                total, _ = model.parse_losses(losses)
            (total * scale).backward()
            return {name: p.grad.float() / scale for name, p in model.named_parameters()
                    if p.grad is not None}
    finally:
        model.zero_grad(set_to_none=True)


def gradient_differences(reference: dict[str, Tensor], other: dict[str, Tensor], *,
                         tolerance: float = 1e-2) -> dict:
    """How far ``other``'s gradients are from ``reference``'s, parameter by parameter.

    The difference of a parameter is ``‖g_other − g_ref‖ / ‖g_ref‖``. Parameters whose
    gradients are both under 1e-6 of the largest reference norm are left out: they are
    rounding (e.g. an attention over a single token), and relative to it any difference is
    large. A non-finite difference (NaN or Inf on either side) counts as over the tolerance.

    Args:
        reference (dict[str, Tensor]): name → gradient, e.g. eager.
        other (dict[str, Tensor]): name → gradient, e.g. compiled.
        tolerance (float): A difference above it counts as a mismatch. Defaults to 1e-2 (the
            benchmark uses it in fp32 and 0.1 under bf16/fp16 autocast, where eager and
            compiled kernels round differently).

    Returns:
        dict: ``compared`` (parameters), ``max_rel_diff`` and ``worst`` (its parameter),
        ``over_tolerance`` (count), ``tolerance``, ``total_norm_rel_diff`` (of the
        concatenated gradients) and ``only_in_one`` (names with a gradient on one side only).
    """
    shared = [name for name in reference if name in other]
    norms = {name: float(reference[name].norm()) for name in shared}
    other_norms = {name: float(other[name].norm()) for name in shared}
    differences = {name: float((other[name].to(reference[name].device) - reference[name]).norm())
                   for name in shared}
    floor = 1e-6 * max((n for n in norms.values() if math.isfinite(n)), default=0.0)
    relative = {name: differences[name] / norms[name] if norms[name] > 0 else math.inf
                for name in shared
                if not (norms[name] <= floor and other_norms[name] <= floor)}
    relative = {name: d if math.isfinite(d) else math.inf for name, d in relative.items()}
    worst = max(relative, key=relative.get, default=None)
    total = sum(n ** 2 for n in norms.values()) ** 0.5
    total_difference = sum(d ** 2 for d in differences.values()) ** 0.5
    return dict(compared=len(relative), max_rel_diff=relative.get(worst, 0.0), worst=worst,
                over_tolerance=sum(d > tolerance for d in relative.values()),
                tolerance=tolerance,
                total_norm_rel_diff=(total_difference / total if total and math.isfinite(total)
                                     else math.inf if total_difference else 0.0),
                only_in_one=sorted(set(reference) ^ set(other)))


def precision_differences(fp32: dict[str, float], mixed: dict[str, float]) -> dict:
    """Compare the loss terms of an fp32 run and a mixed-precision run (:func:`loss_terms`).

    Args:
        fp32 (dict[str, float]): Loss key → fp32 value.
        mixed (dict[str, float]): Loss key → mixed-precision value, the same keys.

    Returns:
        dict: loss key → ``dict(fp32=..., mixed=..., rel_diff=|mixed - fp32| / |fp32|)``.
    """
    return {k: dict(fp32=v, mixed=mixed[k], rel_diff=abs(mixed[k] - v) / max(abs(v), 1e-12))
            for k, v in fp32.items()}


def check_fp32_emulated(cfg: Config, settings: BenchmarkSettings) -> dict:
    """The fp32 check of ``--check-fp32`` without a GPU: CUDA autocast emulated on the CPU.

    The model of ``settings`` is built on the CPU (an ``sd14`` one needs about 10 GB with its
    teacher; at 512×512 the check took 3-10 minutes on 2 cores with AMX). Its loss terms in
    float32 are compared with those under ``settings.amp`` as CUDA autocast casts
    (:class:`~madm.utils.meta_memory.EmulatedCUDAAutocast`): the same rounding points as on
    a GPU, so a precision switch inside autocast (``group_norm_autocast``) is checked as on a
    GPU, short of the kernels' own accumulation order. As in ``--check-fp32``, the fp32 run
    is the same model: a switch of its weights (``vae_dtype``) is in both runs. Levers of the
    optimizer and the host (fused AdamW, merged groups, host syncs) do not change a forward's
    losses.

    Args:
        cfg (Config): The task config.
        settings (BenchmarkSettings): Preset, batch, size, levers, ``amp`` (bf16 or fp16)
            and seed; ``device`` is ignored. Compilation is refused: the emulation sees
            operators as eager code calls them.

    Returns:
        dict: ``fp32_check`` (:func:`precision_differences`), ``model_switches``,
        ``seconds`` (both forwards).
    """
    if settings.amp == 'none':
        raise ValueError('The fp32 check compares a mixed precision with fp32; pick '
                         'amp=bf16 or fp16.')
    if _compiled(settings):
        raise ValueError('The emulated fp32 check does not model torch.compile; check the '
                         'variant without it (or run --check-fp32 on a GPU).')
    start = time.perf_counter()
    settings = dataclasses.replace(settings, device='cpu')
    model = build_benchmark_model(cfg, settings)
    batch = synthetic_batch(settings.batch_size, settings.size, model.num_classes, settings.seed)
    fp32 = loss_terms(model, batch, 'none', settings.seed)
    mixed = loss_terms(model, batch, settings.amp, settings.seed, emulate_cuda_autocast=True)
    summary = dict(fp32_check=precision_differences(fp32, mixed),
                   model_switches=_model_switches(model), seconds=time.perf_counter() - start)
    del model
    gc.collect()
    return summary


def check_fp32_emulated_of_variants(cfg: Config, base: BenchmarkSettings,
                                    variants: tuple[tuple[str, dict], ...] = (), *,
                                    on_result: Callable[[list[dict]], None] | None = None
                                    ) -> list[dict]:
    """:func:`check_fp32_emulated` of each variant (``(name, overrides)``); compiled
    variants are recorded as not modelled, fp32 ones as having nothing to compare."""
    def check(settings: BenchmarkSettings) -> dict:
        if settings.amp == 'none':
            return dict(not_modelled='fp32 itself: nothing to compare')
        return check_fp32_emulated(cfg, settings)

    return _each_variant(dataclasses.replace(base, device='cpu'), variants,
                         'the emulated fp32 check', on_result, check)


def format_fp32_check_emulated(summary: dict, settings: BenchmarkSettings) -> str:
    """A markdown table of :func:`check_fp32_emulated`'s result."""
    lines = [f'Loss terms of one step, fp32 against {settings.amp} as CUDA autocast casts, '
             f'emulated on the CPU ({settings.preset}, batch {settings.batch_size}, '
             f'{settings.size[0]}x{settings.size[1]}, seed {settings.seed}; '
             f"{summary['seconds']:.0f} s):",
             '  model switches: ' + ', '.join(
                 f'{key}={value}' for key, value in summary['model_switches'].items()),
             '', f'| loss term | fp32 | {settings.amp} (emulated) | rel. diff |',
             '|---|---|---|---|']
    lines += [f"| {key} | {d['fp32']:.5f} | {d['mixed']:.5f} | {d['rel_diff']:.1e} |"
              for key, d in summary['fp32_check'].items()]
    return '\n'.join(lines)


def format_fp32_checks_emulated_markdown(results: list[dict]) -> str:
    """A markdown table of :func:`check_fp32_emulated_of_variants`' results: the largest
    relative difference of each variant and the term it is in."""
    lines = ['| variant | largest rel. diff (emulated CUDA autocast) | in | terms |',
             '|---|---|---|---|']
    for entry in results:
        if 'not_modelled' in entry:
            lines.append(f"| {entry['name']} | not checked ({entry['not_modelled']}) | | |")
            continue
        check = entry['fp32_check']
        worst = max(check, key=lambda key: check[key]['rel_diff'])
        lines.append(f"| {entry['name']} | {check[worst]['rel_diff']:.1e} | {worst} | "
                     + ', '.join(f"{key} {d['rel_diff']:.1e}" for key, d in check.items())
                     + ' |')
    return '\n'.join(lines)


# --------------------------------------------------------------------------- driver
def peak_tflops_of(device_name: str) -> float | None:
    """Dense bf16 peak of a device from :data:`PEAK_BF16_TFLOPS`, else None.

    Args:
        device_name (str): e.g. ``torch.cuda.get_device_name()``, ``'NVIDIA H100 80GB HBM3'``.

    Returns:
        float | None: TFLOP/s of the first table entry contained in the name.
    """
    return next((tflops for key, tflops in PEAK_BF16_TFLOPS if key in device_name), None)


def run_benchmark(cfg: Config, settings: BenchmarkSettings, *, check_fp32: bool = False,
                  inference_sizes: tuple[tuple[int, int], ...] = ((512, 512), DSEC_PADDED_SIZE),
                  peak_tflops: float | None = None,
                  flops: int | None = None,
                  profile: bool = False) -> BenchmarkResult:
    """Build, count FLOPs, time training and inference, and optionally check precision.

    Args:
        cfg (Config): The task config.
        settings (BenchmarkSettings): What to measure.
        check_fp32 (bool): Also compare the loss terms of one step in fp32 and under
            ``settings.amp`` (:func:`compare_precision`). Defaults to False.
        inference_sizes (tuple[tuple[int, int], ...]): ``(H, W)`` sizes of the inference
            timing. Defaults to 512×512 and DSEC's 640×440 (W×H) padded to (448, 640).
        peak_tflops (float | None): Device peak for MFU; None looks it up
            (:func:`peak_tflops_of`; CPUs have no entry). Defaults to None.
        flops (int | None): FLOPs per iteration if already counted for the same preset, batch,
            size and fusion stride; None counts them (:func:`count_flops_on_meta`).
            Defaults to None.
        profile (bool): Also profile one step after the timed ones
            (:func:`profile_train_step`). Defaults to False.

    Returns:
        BenchmarkResult: the measurements.
    """
    device = torch.device(settings.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError('device=cuda but torch sees no GPU; pass --device cpu (with '
                           '--preset tiny on a small machine).')
    if any(s % 64 for s in settings.size):
        raise ValueError(f'size must be multiples of 64 (VAE x UNet downsampling), got '
                         f'{settings.size}.')
    if settings.compile_unet_whole and not settings.compile:
        raise ValueError('compile_unet_whole needs compile (it says how the UNet compiles).')
    if settings.compile_mode != 'default' and not _compiled(settings):
        raise ValueError(f'compile_mode={settings.compile_mode!r} needs compile, compile_head '
                         'or compile_vae.')
    if settings.compile_mode == 'reduce-overhead' and not (settings.compile
                                                           or settings.compile_head):
        raise ValueError("compile_mode='reduce-overhead' (CUDA graphs) needs compile or "
                         'compile_head: the VAE compiles without CUDA graphs.')
    if check_fp32 and settings.compile_mode == 'reduce-overhead':
        # CUDA-graph trees may overwrite a compiled call's outputs at the next compiled call
        # within one forward, which the loss terms still read.
        raise ValueError('The fp32 check is not available with CUDA graphs (compile mode '
                         "'reduce-overhead'); check the same variant without them.")
    cudnn_benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = settings.cudnn_benchmark
    # Inductor draws its own random numbers on a GPU; with eager's, the compiled step's dropout
    # masks are the eager check's, so its gradients can be compared (only dropout is random
    # inside the compiled modules).
    import torch._inductor.config as inductor_config
    try:
        with inductor_config.patch(fallback_random=True):
            return _run_benchmark(cfg, settings, device, check_fp32, inference_sizes,
                                  peak_tflops, flops, profile)
    finally:
        torch.backends.cudnn.benchmark = cudnn_benchmark


def _run_benchmark(cfg: Config, settings: BenchmarkSettings, device: torch.device,
                   check_fp32: bool, inference_sizes: tuple[tuple[int, int], ...],
                   peak_tflops: float | None, flops: int | None,
                   profile: bool) -> BenchmarkResult:
    cudagraphs = settings.compile_mode == 'reduce-overhead'
    if flops is None:
        flops = count_flops_on_meta(cfg, settings)
    print_log(f'FLOPs per iteration (meta count): {flops / 1e12:.3f} T', logger='current')

    model = build_benchmark_model(cfg, settings)
    batch = synthetic_batch(settings.batch_size, settings.size, model.num_classes, settings.seed)
    if settings.non_blocking_input and device.type == 'cuda':
        batch = pin_batch(batch)
    check_fp32 = check_fp32 and settings.amp != 'none'
    # The fp32 reference runs eagerly, the mixed-precision forward as it is timed (compiled
    # if asked, with grad), so the check covers what the compiler does too.
    fp32_terms = loss_terms(model, batch, 'none', settings.seed) if check_fp32 else None
    # Matching loss terms do not show a wrong backward (a compiled UNet's, on a CPU).
    check_grads = _compiled(settings) and not cudagraphs
    eager_grads = (step_gradients(model, batch, settings.amp, settings.seed)
                   if check_grads else None)
    # Static shapes: a second input size (inference at DSEC's 448x640) then compiles its own
    # graph; with dynamic shapes the sd14 UNet's recompilation ran past 220 s on an H100.
    # In place, as CompileModulesHook compiles them for training: the backbone's forward hooks
    # still find the UNet's named submodules.
    if settings.compile:
        unet = UNET_MODULES if settings.compile_unet_whole else UNET_BLOCK_MODULES
        compile_submodules(model, unet, settings.compile_mode,
                           backend=settings.compile_backend, allow_cuda_graphs=True)
    if settings.compile_head:
        compile_submodules(model, HEAD_MODULES, settings.compile_mode,
                           backend=settings.compile_backend, allow_cuda_graphs=True)
    if settings.compile_vae:
        mode = 'default' if settings.compile_mode == 'reduce-overhead' else settings.compile_mode
        compile_submodules(model, VAE_MODULES, mode, backend=settings.compile_backend)
    optim_wrapper = build_benchmark_optim_wrapper(model, cfg, settings)
    fp32_check = precision_differences(fp32_terms, loss_terms(
        model, batch, settings.amp, settings.seed, grad=True)) if check_fp32 else None
    grad_check = None
    if check_grads:
        grad_check = gradient_differences(
            eager_grads, step_gradients(model, batch, settings.amp, settings.seed),
            tolerance=1e-2 if settings.amp == 'none' else 1e-1)
        del eager_grads
        _release_memory(device)  # the checks' copies stay out of the timed peak
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    times = time_train_steps(model, optim_wrapper, batch, settings.iters, settings.warmup,
                             cudagraphs=cudagraphs)
    if device.type == 'cuda':
        peak_mem = torch.cuda.max_memory_allocated(device)
        mem_kind = (f'torch.cuda.max_memory_allocated over the timed iterations (reserved: '
                    f'{torch.cuda.max_memory_reserved(device) / 2**30:.2f} GiB)')
        device_name = torch.cuda.get_device_name(device)
        host_syncs = count_host_syncs(model, optim_wrapper, batch, cudagraphs=cudagraphs)
    else:
        host_syncs = None
        # ru_maxrss is in KiB on Linux.
        peak_mem = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        mem_kind = 'peak RSS of the process (getrusage ru_maxrss, includes build and libraries)'
        device_name = f'cpu ({torch.get_num_threads()} threads)'
    profile_table = profile_train_step(model, optim_wrapper, batch,
                                       cudagraphs=cudagraphs) if profile else None

    inference = {f'{h}x{w}': time_inference(model, settings.batch_size, (h, w), settings.amp,
                                             settings.iters, settings.warmup)
                 for h, w in inference_sizes}
    sec = _median(times)
    peak = peak_tflops
    if peak is None and device.type == 'cuda':
        peak = peak_tflops_of(device_name)
    achieved = flops / sec / 1e12
    return BenchmarkResult(
        settings=asdict(settings), device_name=device_name, torch_version=torch.__version__,
        params_trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
        sec_per_iter=sec, iter_per_sec=1.0 / sec, pairs_per_sec=settings.batch_size / sec,
        iter_times=times, peak_memory_bytes=int(peak_mem), peak_memory_kind=mem_kind,
        flops_per_iter=float(flops), achieved_tflops=achieved, peak_tflops=peak,
        mfu=None if peak is None else achieved / peak, inference=inference,
        fp32_check=fp32_check, compiled_grad_check=grad_check, host_syncs=host_syncs,
        profile=profile_table)


def _or_config(value: object) -> str:
    return 'config' if value is None else str(value)


def _unet_compile(settings: dict) -> str:
    if not settings['compile']:
        return 'False'
    # Results saved before the nineteenth session compiled the UNet whole and lack the key.
    return 'whole' if settings.get('compile_unet_whole', True) else 'by block'


def format_markdown(result: BenchmarkResult) -> str:
    """Render a result as markdown tables (metrics, then the fp32 check if any)."""
    s = result.settings
    mfu = 'n/a (no peak for this device; pass --peak-tflops)' if result.mfu is None else (
        f'{100 * result.mfu:.1f} % of {result.peak_tflops:g} TFLOP/s')
    rows = [
        ('device', result.device_name),
        ('preset / batch / size (HxW)', f"{s['preset']} / {s['batch_size']} / "
         f"{s['size'][0]}x{s['size'][1]}"),
        ('amp / attention / grad ckpt', f"{s['amp']} / {s['attention']} / "
         f"{_or_config(s['gradient_checkpointing'])}"),
        ('vae dtype / fusion stride / compile UNet / fused AdamW',
         f"{s['vae_dtype'] or 'config'} / {_or_config(s['fusion_stride'])} / "
         f"{_unet_compile(s)} / {s['fused_adamw']}"),
        ('head checkpointing / head resize / compile head / compile VAE',
         f"{s['head_with_cp']} / {s['head_resize'] or 'config'} / {s['compile_head']} / "
         f"{s['compile_vae']}"),
        ('GroupNorm in autocast dtype / compile mode (backend) / channels-last',
         f"{s['group_norm_autocast']} / {s['compile_mode']} ({s['compile_backend']}) / "
         f"{s['channels_last']}"),
        ('non-blocking input / ClassMix on device / deferred grad-norm log',
         f"{s['non_blocking_input']} / {s['class_mix_on_device']} / {s['deferred_log']}"),
        ('trainable parameters', f'{result.params_trainable / 1e6:.2f} M'),
        ('s/iter (median)', f'{result.sec_per_iter:.4f}'),
        ('it/s', f'{result.iter_per_sec:.3f}'),
        ('pairs/s', f'{result.pairs_per_sec:.3f}'),
        ('peak memory', f'{result.peak_memory_bytes / 2**30:.3f} GiB ({result.peak_memory_kind})'),
        ('FLOPs/iter (model, meta count)', f'{result.flops_per_iter / 1e12:.4f} T'),
        ('achieved TFLOP/s', f'{result.achieved_tflops:.4f}'),
        ('MFU (bf16 peak)', mfu),
    ]
    if result.host_syncs is not None:
        rows.append(('host syncs in one step', str(result.host_syncs['total'])))
    rows += [(f'inference img/s at {k} (HxW)', f'{v:.2f}') for k, v in result.inference.items()]
    lines = ['| metric | value |', '|---|---|'] + [f'| {k} | {v} |' for k, v in rows]
    if result.compiled_grad_check:
        g = result.compiled_grad_check
        one_side = (f"; a gradient on one side only: {', '.join(g['only_in_one'])}"
                    if g['only_in_one'] else '')
        lines += ['', f"Gradients of one step, compiled against eager ({s['amp']}): largest "
                  f"relative difference {g['max_rel_diff']:.2e} ({g['worst'] or 'none'}), "
                  f"{g['over_tolerance']} of {g['compared']} parameters over "
                  f"{g['tolerance']:g}; whole gradient {g['total_norm_rel_diff']:.2e}"
                  f'{one_side}.']
    if result.fp32_check:
        lines += ['', f"| loss term | fp32 | {s['amp']} | relative difference |",
                  '|---|---|---|---|']
        lines += [f"| {k} | {v['fp32']:.6g} | {v['mixed']:.6g} | {v['rel_diff']:.2e} |"
                  for k, v in result.fp32_check.items()]
    return '\n'.join(lines)


# --------------------------------------------------------------------------- lever sweep
#: The memory levers of configs/madm/rgb2event_1gpu-24gb.py as first measured (it has since
#: gained the matmul resize and merged parameter groups).
ALL_LEVERS = dict(gradient_checkpointing=True, vae_dtype='bfloat16', fusion_stride=4,
                  fused_adamw=True)
#: The sweep's name for what configs/madm/rgb2event_1gpu-24gb.py runs now.
CONFIG_24GB_VARIANT = ('bf16 + all levers but compile + matmul resize + merged param groups '
                       '(the 24 GB config)')
#: Overrides of the fastest eager setting at the reference fusion (fifth session, H100:
#: 0.914 s/iter).
BEST_EAGER = dict(amp='bf16', head_resize='matmul', vae_dtype='bfloat16', fused_adamw=True)
#: The step without host syncs (``--host-sync-audit``: 10 by default, 0 with these; fp16's
#: GradScaler would add its inf check).
NO_HOST_SYNCS = dict(non_blocking_input=True, class_mix_on_device=True, deferred_log=True)
#: The candidate fastest eager step at stride 4 (fourteenth session), what compiling adds to.
STRIDE4_CANDIDATE = dict(BEST_EAGER, fusion_stride=4, group_norm_autocast=True, **NO_HOST_SYNCS,
                         merge_param_groups=True)
#: Issue 8's levers as (name, overrides of the baseline settings). The first sessions' sweep
#: comes first, most important first and compilation last (its warm-up is the longest), so
#: that a run cut short by its deadline still has the baseline, the combined setting and the
#: reference precision; later sessions' variants follow, and ``--only`` picks and orders
#: them for a given run.
LEVER_SWEEP: tuple[tuple[str, dict], ...] = (
    ('bf16 (baseline)', dict(amp='bf16')),
    ('bf16 + all levers but compile', dict(amp='bf16', **ALL_LEVERS)),
    ('fp16 + GradScaler', dict(amp='fp16')),
    ('bf16 + math attention (no SDPA)', dict(amp='bf16', attention='math')),
    ('bf16 + gradient checkpointing', dict(amp='bf16', gradient_checkpointing=True)),
    ('bf16 + VAE in bf16', dict(amp='bf16', vae_dtype='bfloat16')),
    ('bf16 + fusion stride 4', dict(amp='bf16', fusion_stride=4)),
    ('bf16 + fused AdamW', dict(amp='bf16', fused_adamw=True)),
    ('bf16 + cudnn.benchmark', dict(amp='bf16', cudnn_benchmark=True)),
    ('bf16 + channels-last', dict(amp='bf16', channels_last=True)),
    ('bf16 + all levers + cudnn.benchmark + channels-last',
     dict(amp='bf16', cudnn_benchmark=True, channels_last=True, **ALL_LEVERS)),
    ('fp32', dict(amp='none')),
    # The cheap levers together, at the reference's full-size fusion, with the head's
    # activations recomputed, and at stride 4 without gradient checkpointing (it costs time
    # and was not needed to stay under 24 GiB).
    ('bf16 + VAE in bf16 + fused AdamW',
     dict(amp='bf16', vae_dtype='bfloat16', fused_adamw=True)),
    ('bf16 + head checkpointing + VAE in bf16 + fused AdamW',
     dict(amp='bf16', head_with_cp=True, vae_dtype='bfloat16', fused_adamw=True)),
    ('bf16 + fusion stride 4 + VAE in bf16 + fused AdamW',
     dict(amp='bf16', fusion_stride=4, vae_dtype='bfloat16', fused_adamw=True)),
    # Not yet measured on a GPU: the embeddings' upsampling backward was 20 % of the H100 step.
    ('bf16 + matmul resize + VAE in bf16 + fused AdamW',
     dict(amp='bf16', head_resize='matmul', vae_dtype='bfloat16', fused_adamw=True)),
    ('bf16 + compile', dict(amp='bf16', compile=True)),
    ('bf16 + all levers + compile', dict(amp='bf16', compile=True, **ALL_LEVERS)),
    ('bf16 + VAE in bf16 + fused AdamW + compile (UNet and head)',
     dict(amp='bf16', vae_dtype='bfloat16', fused_adamw=True, compile=True,
          compile_head=True)),
    ('bf16 + matmul resize + VAE in bf16 + fused AdamW + compile (UNet and head)',
     dict(amp='bf16', head_resize='matmul', vae_dtype='bfloat16', fused_adamw=True,
          compile=True, compile_head=True)),
    ('bf16 + fusion stride 4 + VAE in bf16 + fused AdamW + compile (UNet and head)',
     dict(amp='bf16', fusion_stride=4, vae_dtype='bfloat16', fused_adamw=True,
          compile=True, compile_head=True)),
    # Not yet measured on a GPU (fifth-session profile: float32 GroupNorm and dtype casts were
    # 24-37 % of the GPU time; the host left the GPU idle for ~27 % of the stride-4 step; 10
    # of the 25 host syncs counted on the H200 were the data preprocessor's blocking copies).
    ('bf16 + GroupNorm in bf16 + matmul resize + VAE in bf16 + fused AdamW',
     dict(BEST_EAGER, group_norm_autocast=True)),
    ('bf16 + fusion stride 4 + matmul resize + VAE in bf16 + fused AdamW',
     dict(BEST_EAGER, fusion_stride=4)),
    ('bf16 + fusion stride 4 + GroupNorm in bf16 + matmul resize + VAE in bf16 + fused AdamW',
     dict(BEST_EAGER, fusion_stride=4, group_norm_autocast=True)),
    ('bf16 + fusion stride 4 + matmul resize + VAE in bf16 + fused AdamW + compile '
     '(UNet and head)',
     dict(BEST_EAGER, fusion_stride=4, compile=True, compile_head=True)),
    ('bf16 + fusion stride 4 + GroupNorm in bf16 + no host syncs + matmul resize + VAE in '
     'bf16 + fused AdamW',
     dict(BEST_EAGER, fusion_stride=4, group_norm_autocast=True, **NO_HOST_SYNCS)),
    ('bf16 + fusion stride 4 + GroupNorm in bf16 + no host syncs + matmul resize + VAE in '
     'bf16 + fused AdamW + compile (UNet and head)',
     dict(BEST_EAGER, fusion_stride=4, group_norm_autocast=True, **NO_HOST_SYNCS,
          compile=True, compile_head=True)),
    # Not yet measured on a GPU: AdamW's 769 one-parameter groups merged into 2 (fourteenth
    # session: the host's optimizer time on the CPU VM fell 41-56 -> 11-16 ms, fused AdamW).
    ('bf16 + fusion stride 4 + GroupNorm in bf16 + no host syncs + merged param groups + '
     'matmul resize + VAE in bf16 + fused AdamW', STRIDE4_CANDIDATE),
    ('bf16 + fusion stride 4 + GroupNorm in bf16 + no host syncs + matmul resize + VAE in '
     'bf16 + fused AdamW + compile with CUDA graphs (UNet and head)',
     dict(BEST_EAGER, fusion_stride=4, group_norm_autocast=True, **NO_HOST_SYNCS,
          compile=True, compile_head=True, compile_mode='reduce-overhead')),
    # Not yet measured on a GPU (fifteenth session): the frozen VAE's encodes and decodes are
    # 46 of the 100 ms roofline bound at stride 4, and no compiled variant compiled them.
    ('bf16 + fusion stride 4 + GroupNorm in bf16 + no host syncs + merged param groups + '
     'matmul resize + VAE in bf16 + fused AdamW + compile (VAE)',
     dict(STRIDE4_CANDIDATE, compile_vae=True)),
    ('bf16 + fusion stride 4 + GroupNorm in bf16 + no host syncs + merged param groups + '
     'matmul resize + VAE in bf16 + fused AdamW + compile (UNet, head and VAE)',
     dict(STRIDE4_CANDIDATE, compile=True, compile_head=True, compile_vae=True)),
    ('bf16 + fusion stride 4 + GroupNorm in bf16 + no host syncs + merged param groups + '
     'matmul resize + VAE in bf16 + fused AdamW + compile with CUDA graphs (UNet and head) '
     '+ compile (VAE)',
     dict(STRIDE4_CANDIDATE, compile=True, compile_head=True, compile_vae=True,
          compile_mode='reduce-overhead')),
    # Nineteenth session: the variants above compile the UNet block by block. As one graph,
    # as the fifth session's compiled rows did (speed, and whether a GPU's gradients are
    # right: inductor's were wrong on a CPU).
    ('bf16 + fusion stride 4 + GroupNorm in bf16 + no host syncs + merged param groups + '
     'matmul resize + VAE in bf16 + fused AdamW + compile (UNet whole, head and VAE)',
     dict(STRIDE4_CANDIDATE, compile=True, compile_unet_whole=True, compile_head=True,
          compile_vae=True)),
    # Not yet measured on a GPU (sixteenth session): what configs/madm/rgb2event_1gpu-24gb.py
    # runs today; its 18.55 GiB was measured before the matmul resize and the merged groups.
    (CONFIG_24GB_VARIANT,
     dict(amp='bf16', **ALL_LEVERS, head_resize='matmul', merge_param_groups=True)),
)
#: Variants whose loss terms are compared with fp32, and those timed at inference too.
SWEEP_CHECK_FP32 = ('bf16 (baseline)', 'bf16 + all levers but compile', 'fp16 + GradScaler',
                    CONFIG_24GB_VARIANT,
                    # the fastest candidate: does compiling keep the losses?
                    'bf16 + fusion stride 4 + GroupNorm in bf16 + no host syncs + merged param '
                    'groups + matmul resize + VAE in bf16 + fused AdamW + compile (UNet, head '
                    'and VAE)',
                    'bf16 + head checkpointing + VAE in bf16 + fused AdamW',
                    'bf16 + matmul resize + VAE in bf16 + fused AdamW',
                    'bf16 + GroupNorm in bf16 + matmul resize + VAE in bf16 + fused AdamW',
                    # a 24 GB candidate without UNet checkpointing (meta estimate: 18.75 GiB)
                    'bf16 + fusion stride 4 + GroupNorm in bf16 + matmul resize + VAE in bf16 '
                    '+ fused AdamW')
SWEEP_INFERENCE = ('bf16 (baseline)', 'bf16 + all levers but compile', 'fp32',
                   'bf16 + compile', 'bf16 + VAE in bf16 + fused AdamW',
                   'bf16 + matmul resize + VAE in bf16 + fused AdamW',
                   'bf16 + GroupNorm in bf16 + matmul resize + VAE in bf16 + fused AdamW')


def _release_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == 'cuda':
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def run_lever_sweep(cfg: Config, base: BenchmarkSettings, *,
                    variants: tuple[tuple[str, dict], ...] = LEVER_SWEEP,
                    check_fp32_for: tuple[str, ...] = SWEEP_CHECK_FP32,
                    inference_for: tuple[str, ...] = SWEEP_INFERENCE,
                    inference_sizes: tuple[tuple[int, int], ...] = ((512, 512),
                                                                     DSEC_PADDED_SIZE),
                    deadline_s: float | None = None,
                    peak_tflops: float | None = None,
                    profile_for: tuple[str, ...] = (),
                    on_result: Callable[[list[dict]], None] | None = None) -> list[dict]:
    """Measure every lever on and off in one process (one model build per variant).

    A variant that fails (out of memory, a compile error) is recorded with its error and the
    sweep goes on. With a deadline, a variant is skipped when the time left is less than the
    longest variant so far took (three times that for a compiled one), so that a lease-bound
    run ends with complete results rather than being killed half-way.

    Args:
        cfg (Config): The task config.
        base (BenchmarkSettings): Preset, device, batch, size, iterations and seed shared by
            all variants; each variant overrides some fields.
        variants (tuple): ``(name, overrides)`` pairs. Defaults to :data:`LEVER_SWEEP`.
        check_fp32_for (tuple[str, ...]): Names of the variants that also compare their loss
            terms with fp32. Defaults to :data:`SWEEP_CHECK_FP32`.
        inference_for (tuple[str, ...]): Names of the variants that also time inference.
            Defaults to :data:`SWEEP_INFERENCE`.
        inference_sizes (tuple[tuple[int, int], ...]): ``(H, W)`` sizes of those timings.
        deadline_s (float | None): Seconds from the call after which no variant starts.
            Defaults to None (no limit).
        peak_tflops (float | None): Device peak for MFU; None looks it up. Defaults to None.
        profile_for (tuple[str, ...]): Names of the variants that also profile one step.
            Defaults to ().
        on_result (Callable | None): Called with the list so far after every variant, e.g.
            to save it. Defaults to None.

    Returns:
        list[dict]: One entry per variant: ``name``, ``status`` (``'ok'``, ``'failed'`` or
        ``'skipped'``), ``wall_s`` and, when ok, :meth:`BenchmarkResult.to_dict`'s fields;
        when failed, ``error`` and the end of the traceback.
    """
    start = time.perf_counter()
    device = torch.device(base.device)
    flops_cache: dict[tuple, int] = {}
    results: list[dict] = []
    longest = 0.0
    for name, overrides in variants:
        settings = dataclasses.replace(base, **overrides)
        entry: dict = dict(name=name, settings=asdict(settings))
        elapsed = time.perf_counter() - start
        compiled = _compiled(settings)
        needed = longest * (3.0 if compiled else 1.0)
        if deadline_s is not None and elapsed + needed > deadline_s:
            entry.update(status='skipped', wall_s=0.0,
                         error=f'deadline: {elapsed:.0f} s used of {deadline_s:.0f} s, '
                               f'this variant needs about {needed:.0f} s')
            results.append(entry)
            print_log(f'[sweep] {name}: skipped ({entry["error"]})', logger='current')
            continue
        t0 = time.perf_counter()
        try:
            key = (settings.preset, settings.batch_size, tuple(settings.size),
                   settings.fusion_stride)
            if key not in flops_cache:
                flops_cache[key] = count_flops_on_meta(cfg, settings)
            result = run_benchmark(
                cfg, settings, check_fp32=name in check_fp32_for,
                inference_sizes=inference_sizes if name in inference_for else (),
                peak_tflops=peak_tflops, flops=flops_cache[key], profile=name in profile_for)
            entry.update(status='ok', **result.to_dict())
        except Exception as error:  # noqa: BLE001  recorded, and the sweep goes on
            entry.update(status='failed', error=f'{type(error).__name__}: {error}'[:2000],
                         traceback=traceback.format_exc()[-3000:])
        finally:
            entry['wall_s'] = time.perf_counter() - t0
        _release_memory(device)
        if compiled:
            torch._dynamo.reset()  # the next variant's modules are new ones
        longest = max(longest, entry['wall_s'] / (3.0 if compiled else 1.0))
        results.append(entry)
        print_log(f'[sweep] {name}: {summarise_variant(entry)}', logger='current')
        if on_result is not None:
            on_result(results)
    return results


def summarise_variant(entry: dict) -> str:
    """One line: s/iter, peak memory, MFU and syncs of an ok variant, else why it is missing."""
    if entry['status'] != 'ok':
        return f"{entry['status']}: {entry.get('error', '')}"
    mfu = 'n/a' if entry['mfu'] is None else f"{100 * entry['mfu']:.1f} %"
    syncs = '' if entry.get('host_syncs') is None else (
        f", {entry['host_syncs']['total']} host syncs")
    return (f"{entry['sec_per_iter']:.4f} s/iter, peak {entry['peak_memory_bytes'] / 2**30:.2f} "
            f"GiB, {entry['flops_per_iter'] / 1e12:.2f} TFLOP/iter, MFU {mfu}{syncs} "
            f"({entry['wall_s']:.0f} s wall)")


def format_sweep_markdown(results: list[dict]) -> str:
    """A markdown table of a lever sweep: one row per variant, relative to the first."""
    base = next((r for r in results if r['status'] == 'ok'), None)
    lines = ['| variant | s/iter | speed-up vs first | peak memory GiB | TFLOP/iter | MFU | '
             'host syncs | inference img/s | max rel. loss diff vs fp32 |',
             '|---|---|---|---|---|---|---|---|---|']
    for r in results:
        if r['status'] != 'ok':
            lines.append(f"| {r['name']} | {r['status']}: {r.get('error', '')[:120]} "
                         '| | | | | | | |')
            continue
        speedup = base['sec_per_iter'] / r['sec_per_iter']
        mfu = 'n/a' if r['mfu'] is None else f"{100 * r['mfu']:.1f} %"
        syncs = '' if r.get('host_syncs') is None else str(r['host_syncs']['total'])
        inference = ', '.join(f'{k}: {v:.2f}' for k, v in r['inference'].items())
        check = '' if not r['fp32_check'] else (
            f"{max(v['rel_diff'] for v in r['fp32_check'].values()):.1e}")
        if r.get('compiled_grad_check'):
            g = r['compiled_grad_check']
            check += (f"{'; ' if check else ''}gradients vs eager: {g['max_rel_diff']:.1e}, "
                      f"{g['over_tolerance']} of {g['compared']} over {g['tolerance']:g}, "
                      f"{len(g['only_in_one'])} on one side only")
        lines.append(f"| {r['name']} | {r['sec_per_iter']:.4f} | {speedup:.2f}x | "
                     f"{r['peak_memory_bytes'] / 2**30:.2f} | {r['flops_per_iter'] / 1e12:.2f} | "
                     f'{mfu} | {syncs} | {inference} | {check} |')
    return '\n'.join(lines)
