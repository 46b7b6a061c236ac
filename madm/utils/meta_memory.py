"""A training step's peak CUDA memory, estimated on the ``meta`` device (issue 8).

A GPU is lent only sometimes; whether a config fits a 24 GB card should not wait for one.
Run on ``meta``, a step allocates nothing, but every operator still produces tensors of the
right shapes and dtypes, autograd still saves what backward needs and frees it when done.
Two pieces make that a memory estimate:

* :class:`LiveMemoryTracker` adds up the bytes of every live storage (each rounded up to the
  CUDA caching allocator's 512-byte blocks) and keeps the maximum: the analogue of
  ``torch.cuda.max_memory_allocated``.
* :class:`EmulatedCUDAAutocast` applies CUDA autocast's casting rules, which ``meta`` tensors
  do not get (nor CPU tensors, whose autocast has rules of its own): matmuls and
  convolutions cast to the autocast dtype (a trainable weight's cast kept for the whole
  context, as autocast's cache keeps it), norms, losses and reductions to float32, and a
  few ops to their widest input. It also runs SDPA as the fused attention
  kernels do, saving the output and the log-sum-exp instead of the attention matrix that
  ``meta``'s math fallback would keep.

Not modelled: the cuBLAS/cuDNN workspaces that the kernels take from the allocator (tens to
hundreds of MiB, transiently), fragmentation (``max_memory_reserved``), and
``torch.compile``, whose fusions change what is kept for backward.
"""
import gc
import weakref
from collections.abc import Callable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode
from torch.utils import _pytree as pytree
from torch.utils.hooks import RemovableHandle

from madm.models.utils.group_norm import AutocastGroupNorm
from madm.utils.host_sync_audit import MetaPlaceholders

#: The CUDA caching allocator rounds every block up to a multiple of 512 bytes.
ALLOCATION_BLOCK_BYTES = 512

# CUDA autocast's op lists (PyTorch's "Autocast Op Reference", CUDA), by function name, as
# they reach a TorchFunctionMode: torch functions, Tensor methods and nn.functional.
_LOWER_PRECISION_OPS = frozenset({
    '__matmul__', 'addbmm', 'addmm', 'addmv', 'addr', 'baddbmm', 'bmm', 'chain_matmul',
    'multi_dot', 'linalg_multi_dot', 'linalg_vecdot', 'conv1d', 'conv2d', 'conv3d', 'conv_tbc',
    'conv_transpose1d', 'conv_transpose2d', 'conv_transpose3d', 'convolution', '_convolution',
    'cudnn_convolution', 'cudnn_convolution_transpose', 'prelu', 'linear', 'matmul', 'mm', 'mv',
    'einsum', 'lstm_cell', 'gru_cell', 'rnn_tanh_cell', 'rnn_relu_cell',
    'scaled_dot_product_attention'})
_FLOAT32_OPS = frozenset({
    '__pow__', '__rdiv__', '__rpow__', '__rtruediv__', 'acos', 'asin', 'cosh', 'erfinv', 'exp',
    'expm1', 'log', 'log10', 'log2', 'log1p', 'reciprocal', 'rsqrt', 'sinh', 'tan', 'pow',
    'softplus', 'layer_norm', 'rms_norm', 'group_norm', 'norm', 'normalize', 'frobenius_norm',
    'nuclear_norm', 'cosine_similarity', 'poisson_nll_loss', 'cosine_embedding_loss',
    'nll_loss', 'nll_loss2d', 'hinge_embedding_loss', 'kl_div', 'l1_loss', 'smooth_l1_loss',
    'huber_loss', 'mse_loss', 'margin_ranking_loss', 'multilabel_margin_loss',
    'soft_margin_loss', 'triplet_margin_loss', 'multi_margin_loss', 'cross_entropy',
    'binary_cross_entropy_with_logits', 'dist', 'pdist', 'cdist', 'renorm', 'logsumexp',
    'native_layer_norm', 'upsample_nearest1d', 'upsample_nearest2d', 'upsample_nearest3d',
    '_upsample_nearest_exact1d', '_upsample_nearest_exact2d', '_upsample_nearest_exact3d',
    'upsample_linear1d', 'upsample_bilinear2d', '_upsample_bilinear2d_aa',
    'upsample_trilinear3d', 'upsample_bicubic2d', '_upsample_bicubic2d_aa',
    # nn.functional's entry points to those upsampling kernels
    'upsample', 'upsample_nearest', 'upsample_bilinear'})
# Computed in float32 through their ``dtype`` argument, when they are not given one.
_FLOAT32_BY_DTYPE_OPS = frozenset({'softmax', 'log_softmax', 'softmin', 'cumprod', 'cumsum',
                                   'prod', 'sum', 'linalg_vector_norm', 'linalg_matrix_norm',
                                   'vector_norm', 'matrix_norm'})
_PROMOTE_OPS = frozenset({'addcdiv', 'addcmul', 'atan2', 'bilinear', 'cross', 'dot', 'vdot',
                          'grid_sampler', 'index_put', 'scatter_add', 'tensordot'})
# CUDA autocast refuses it (unsafe in float16).
_BANNED_OPS = frozenset({'binary_cross_entropy'})


def _rounded(nbytes: int) -> int:
    blocks = -(-nbytes // ALLOCATION_BLOCK_BYTES)
    return blocks * ALLOCATION_BLOCK_BYTES


class LiveMemoryTracker(MetaPlaceholders):
    """The bytes of live ``meta`` storages, and their maximum while the context is active.

    On entering, every ``meta`` tensor alive in the process is counted (weights, optimizer
    state, anything a model keeps); afterwards each operator's outputs are. A storage counts
    from its first tensor until the last tensor viewing it is freed, so views and in-place
    results add nothing. Value-dependent calls (``.item()``, boolean masks) get
    :class:`~madm.utils.host_sync_audit.MetaPlaceholders`' stand-in results, so a masked
    selection counts at its largest size (every element selected).

    Attributes:
        current (int): Bytes live now.
        resident (int): Bytes live when the context was entered.
        peak (int): Most bytes live at once while it was active.
        peak_op (str | None): The operator whose outputs reached ``peak``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.current = 0
        self.resident = 0
        self.peak = 0
        self.peak_op: str | None = None
        self._live: dict[int, tuple[weakref.finalize, int]] = {}

    def __enter__(self) -> 'LiveMemoryTracker':
        gc.collect()
        for tensor in _meta_tensors():
            self._track(tensor)
        self.resident = self.peak = self.current
        return super().__enter__()

    def __exit__(self, *exc) -> None:
        super().__exit__(*exc)
        while self._live:  # a finalizer may fire (and pop its entry) while we detach others
            _, (finalizer, _) = self._live.popitem()
            finalizer.detach()

    def _track(self, tensor: Tensor) -> None:
        try:
            storage = tensor.untyped_storage()
        except (NotImplementedError, RuntimeError):  # sparse and other storage-less layouts
            return
        key, nbytes = id(storage), _rounded(storage.nbytes())
        if key in self._live:
            finalizer, counted = self._live[key]
            if nbytes != counted:  # resized in place (``out=`` arguments)
                self._live[key] = (finalizer, nbytes)
                self.current += nbytes - counted
            return
        # A storage's Python object lives as long as its memory, so this fires on the free.
        self._live[key] = (weakref.finalize(storage, self._release, key), nbytes)
        self.current += nbytes

    def _release(self, key: int) -> None:
        _, nbytes = self._live.pop(key)
        self.current -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = super().__torch_dispatch__(func, types, args, kwargs)
        for leaf in pytree.tree_leaves(out):
            if isinstance(leaf, Tensor) and leaf.device.type == 'meta':
                self._track(leaf)
        if self.current > self.peak:
            self.peak, self.peak_op = self.current, str(func)
        return out


def _is_eligible(value: object, device_type: str) -> bool:
    return (isinstance(value, Tensor) and value.device.type == device_type
            and value.is_floating_point() and value.dtype != torch.float64)


class EmulatedCUDAAutocast(TorchFunctionMode):
    """CUDA autocast's casts, for ``meta`` tensors, which real autocast leaves alone, or CPU ones.

    Inside the context, the ops of CUDA autocast's lists cast their floating-point arguments
    on ``device_type`` as ``torch.autocast('cuda', dtype)`` would: to ``dtype`` for matmuls,
    convolutions and attention (the cast of a trainable leaf weight is made once and kept until
    the context exits, like autocast's cache), to float32 for norms, losses and pointwise
    transcendentals, to the widest input for the promoting ops. ``softmax``, ``sum`` and the
    like compute in float32 through their ``dtype`` argument. The casts are ordinary
    differentiable ``.to()`` calls above autograd, so backward saves and frees what it would
    on a GPU. ``AutocastGroupNorm`` layers (``group_norm_precision='autocast'``) keep the
    autocast dtype, as on CUDA.

    With ``fused_attention`` (the default), ``scaled_dot_product_attention`` without a mask
    runs as the flash kernel, whose backward keeps the output and the log-sum-exp rather
    than the attention matrix.

    On ``'cpu'`` it gives a float32 model CUDA autocast's rounding points, for checking a
    mixed-precision step's losses against float32 without a GPU (CPU autocast casts other
    ops: it leaves ``group_norm`` in the input's dtype, for one). Run it with CPU autocast
    off. Kernels still differ in their accumulation order, and SDPA runs the CPU's own kernel.

    Args:
        dtype (torch.dtype | None): ``torch.bfloat16`` or ``torch.float16``; None casts
            nothing (a float32 step) and only emulates the fused attention.
        fused_attention (bool): Emulate the fused SDPA kernels. Defaults to True.
        cache_weight_casts (bool): Keep a trainable weight's cast for the whole context.
            Off around backward, where each checkpointed segment recomputes under an
            autocast of its own, whose cache lasts only for the segment. Defaults to True.
        modules (nn.Module | None): Where to find ``AutocastGroupNorm`` layers.
            Defaults to None.
        device_type (str): Whose tensors are cast: ``'meta'`` (the memory and roofline
            estimates) or ``'cpu'`` (numerics; the fused attention is not emulated there).
            Defaults to 'meta'.
    """

    def __init__(self, dtype: torch.dtype | None, *, fused_attention: bool = True,
                 cache_weight_casts: bool = True, modules: nn.Module | None = None,
                 device_type: str = 'meta') -> None:
        super().__init__()
        if dtype not in (torch.bfloat16, torch.float16, None):
            raise ValueError(f'autocast dtype must be bfloat16, float16 or None, got {dtype}.')
        if device_type not in ('meta', 'cpu'):
            raise ValueError(f"device_type must be 'meta' or 'cpu', got {device_type!r}.")
        self.dtype = dtype
        self.device_type = device_type
        # its point is what the fused kernels keep for backward, a memory matter; torch's
        # flash operator has no CPU kernel, and CPU SDPA picks its own
        fused_attention = fused_attention and device_type == 'meta'
        self.fused_attention = fused_attention
        self.cache_weight_casts = cache_weight_casts
        self._modules = modules
        # id -> (the weight, its cast): keeping the weight keeps its id from being reused
        self._weight_casts: dict[int, tuple[Tensor, Tensor]] = {}
        self._in_autocast_group_norm = 0
        self._hooks: list[RemovableHandle] = []

    def __enter__(self) -> 'EmulatedCUDAAutocast':
        if self._modules is not None:
            for module in self._modules.modules():
                if isinstance(module, AutocastGroupNorm):
                    # always_call: checkpoint's recomputation may stop inside a forward
                    self._hooks += [module.register_forward_pre_hook(self._enter_norm),
                                    module.register_forward_hook(self._leave_norm,
                                                                 always_call=True)]
        return super().__enter__()

    def __exit__(self, *exc) -> None:
        super().__exit__(*exc)
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()
        self._weight_casts.clear()  # autocast empties its cache on leaving the context

    def backward(self, loss: Tensor) -> None:
        """``loss.backward()`` with the casts active, for what gradient checkpointing recomputes.

        A mode is inactive while it handles a call, and ``Tensor.backward`` is one it would
        handle, so the autograd engine is run directly, inside the context.
        """
        grad = torch.ones_like(loss)
        with self:
            torch.autograd.graph._engine_run_backward(
                (loss,), (grad,), False, False, (), allow_unreachable=True,
                accumulate_grad=True)

    def _enter_norm(self, module: nn.Module, args: tuple) -> None:
        self._in_autocast_group_norm += 1

    def _leave_norm(self, module: nn.Module, args: tuple, output: Tensor) -> None:
        self._in_autocast_group_norm -= 1

    def _cast(self, value: Tensor, dtype: torch.dtype) -> Tensor:
        if value.dtype == dtype:
            return value
        cacheable = (self.cache_weight_casts and dtype == self.dtype
                     and value.dtype == torch.float32
                     and value.requires_grad and value.is_leaf and not value._is_view())
        if not cacheable:
            return value.to(dtype)
        cached = self._weight_casts.get(id(value))
        if cached is None:
            cached = self._weight_casts[id(value)] = value, value.to(dtype)
        return cached[1]

    def _cast_all(self, args: tuple, kwargs: dict,
                  dtype: torch.dtype) -> tuple[tuple, dict]:
        def cast(value):
            return self._cast(value, dtype) if _is_eligible(value, self.device_type) else value
        return pytree.tree_map(cast, (args, kwargs))

    def __torch_function__(self, func: Callable, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, '__name__', '')
        eligible = [v for v in pytree.tree_leaves((args, kwargs))
                    if _is_eligible(v, self.device_type)]
        if not eligible:
            return func(*args, **kwargs)
        if self.dtype is None:  # float32: no casts, only the attention kernel
            if name == 'scaled_dot_product_attention' and self.fused_attention:
                return _fused_attention(*args, **kwargs)
            return func(*args, **kwargs)
        if name in _BANNED_OPS:
            raise RuntimeError(f'{name} is unsafe to autocast (as CUDA autocast says); use '
                               'binary_cross_entropy_with_logits.')
        if name == 'group_norm' and self._in_autocast_group_norm:
            args, kwargs = self._cast_all(args, kwargs, self.dtype)
        elif name in _LOWER_PRECISION_OPS:
            args, kwargs = self._cast_all(args, kwargs, self.dtype)
            if name == 'scaled_dot_product_attention' and self.fused_attention:
                return _fused_attention(*args, **kwargs)
        elif name in _FLOAT32_OPS or (name == 'interpolate' and _interpolation_mode(
                args, kwargs) != 'area'):  # every mode but 'area' is an upsample kernel
            args, kwargs = self._cast_all(args, kwargs, torch.float32)
        elif name in _FLOAT32_BY_DTYPE_OPS and kwargs.get('dtype') is None and not any(
                isinstance(arg, torch.dtype) for arg in args):  # dtype may come positionally
            kwargs = dict(kwargs, dtype=torch.float32)
        elif name in _PROMOTE_OPS:
            widest = max((v.dtype for v in eligible), key=lambda d: torch.finfo(d).bits)
            args, kwargs = self._cast_all(args, kwargs, widest)
        return func(*args, **kwargs)


def _interpolation_mode(args: tuple, kwargs: dict) -> str:
    return kwargs.get('mode', args[3] if len(args) > 3 else 'nearest')


def _fused_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
                     dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
                     enable_gqa: bool = False) -> Tensor:
    """``scaled_dot_product_attention`` as CUDA's fused kernels run it, where they apply: the
    flash kernel for half types, the memory-efficient one for float32 (flash has none)."""
    if attn_mask is not None or enable_gqa or query.dim() != 4:
        return F.scaled_dot_product_attention(query, key, value, attn_mask, dropout_p,
                                              is_causal, scale=scale, enable_gqa=enable_gqa)
    if query.dtype == torch.float32:
        return torch.ops.aten._scaled_dot_product_efficient_attention(
            query, key, value, None, True, dropout_p, is_causal, scale=scale)[0]
    return torch.ops.aten._scaled_dot_product_flash_attention(
        query, key, value, dropout_p, is_causal, False, scale=scale)[0]


def _meta_tensors() -> Iterator[Tensor]:
    for obj in gc.get_objects():
        if issubclass(type(obj), Tensor) and obj.device.type == 'meta':
            yield obj
