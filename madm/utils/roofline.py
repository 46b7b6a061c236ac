"""A lower bound on a training step's GPU time, counted on the ``meta`` device (issue 8).

Issue 8 asks for 35 % MFU at the reference batch. Whether that is reachable is first a question
of the step's arithmetic and memory traffic, and both can be counted without a GPU: run on
``meta``, every operator still sees the shapes and dtypes it would see on the GPU (with
:class:`~madm.utils.meta_memory.EmulatedCUDAAutocast` for autocast's casts). For each operator,
:class:`RooflineCounter` takes

* its FLOPs, by torch's own formulas (those of :class:`torch.utils.flop_counter.FlopCounterMode`:
  matmuls, convolutions, attention), with grouped convolutions' backward corrected
  (:mod:`madm.utils.flop_formulas`), and
* the bytes it must move at least: each tensor argument read once, each result written once
  (views, allocations and metadata move nothing; an in-place operator reads and writes its
  target; ``copy_`` and fills only write it; a broadcast argument counts its distinct elements).

On a device with peak P FLOP/s and bandwidth B an operator needs at least
``max(flops / P, bytes / B)`` (the roofline model). Eager PyTorch runs about one kernel per
operator, so the sum over the step bounds an eager step from below; the same sum over matmuls,
convolutions and attention alone bounds a step in which every other operator were fused into
them for free, the best a compiler could do. Model FLOPs over either bound, over the peak, is an
MFU ceiling.

Not modelled, each of which makes a real step slower than the bound: launch overhead and host
gaps (the number of kernels is reported), kernels that do not reach their roofline, and the
caches (an operator re-reading what the previous one wrote is counted as memory traffic, which
can make the bound slightly pessimistic for small tensors). Gradient checkpointing's
recomputation is counted, since it runs.

Operators can also be summed by model part (:meth:`RooflineCounter.part`, :func:`count_parts`),
backward's included: autograd numbers the nodes it creates in the order it creates them (the
sequence numbers the profiler matches backward operators to forward ones by), the counter notes
which part was current as those numbers went by, and an operator autograd runs for a node
counts for the part that was current when the node was created.
"""
import bisect
import contextlib
import math
import threading
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields

import torch
from torch import Tensor
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

from madm.utils.flop_formulas import FLOP_FORMULAS
from madm.utils.host_sync_audit import MetaPlaceholders


@dataclass(frozen=True)
class DeviceSpec:
    """Datasheet peaks of a GPU (dense, no sparsity).

    Attributes:
        name (str): Marketing name.
        half_tflops (float): bf16/fp16 tensor-core TFLOP/s.
        tf32_tflops (float): TF32 tensor-core TFLOP/s (float32 matmuls allowed to use TF32).
        fp32_tflops (float): float32 TFLOP/s without tensor cores.
        bandwidth_tbs (float): Memory bandwidth, TB/s.
    """
    name: str
    half_tflops: float
    tf32_tflops: float
    fp32_tflops: float
    bandwidth_tbs: float


#: The GPUs lent to this project (NVIDIA's datasheets; the H200 is the H100's chip with HBM3e).
DEVICE_SPECS = {
    'h100': DeviceSpec('NVIDIA H100 SXM', 989.4, 494.7, 66.9, 3.35),
    'h200': DeviceSpec('NVIDIA H200 SXM', 989.4, 494.7, 66.9, 4.8),
}

#: Operator categories, in the order reports list them.
CATEGORIES = ('matmul', 'convolution', 'attention', 'normalisation', 'resize',
              'casts and copies', 'other elementwise and reductions', 'optimizer')
COMPUTE_CATEGORIES = frozenset({'matmul', 'convolution', 'attention'})
#: Phases of a training step (:meth:`RooflineCounter.phase`).
PHASES = ('forward', 'backward', 'optimizer')

_MATMULS = frozenset({'mm', 'addmm', 'bmm', 'baddbmm', '_scaled_mm'})
_CASTS = frozenset({'_to_copy', 'copy_', 'clone', '_copy_from', 'copy'})
# In-place operators that overwrite their target without reading it.
_WRITE_ONLY = frozenset({'copy_', 'fill_', 'zero_', 'normal_', 'uniform_', 'bernoulli_',
                         'random_', 'exponential_', 'geometric_', 'cauchy_', 'log_normal_'})
# Not views by their schema, but they allocate or re-describe memory without moving it.
_FREE = frozenset({'empty', 'empty_like', 'empty_strided', 'new_empty', 'new_empty_strided',
                   '_unsafe_view', 'detach', 'alias', 'lift_fresh', 'set_', 'resize_',
                   'record_stream', '_reshape_alias', 'as_strided_', 'resize_as_',
                   # in-place metadata changes
                   'unsqueeze_', 'squeeze_', 't_', 'transpose_', 'swapdims_', 'swapaxes_'})
# Operators that read only the rows of a table their indices select: the table's share of
# the read is at most what they write.
_GATHERS = frozenset({'embedding', 'index', 'index_select', 'gather', 'take',
                      'take_along_dim'})
# multi_tensor_apply's limits (ATen's MultiTensorApply.cuh): tensors per launch by the number
# of tensor lists, chunks of 65,536 elements and 320 blocks per launch.
_MAX_TENSORS_BY_DEPTH = (110, 64, 48, 36, 30)
_CHUNK_ELEMENTS = 65536
_MAX_BLOCKS = 320


def op_category(name: str) -> str:
    """The category of an aten operator, by its packet name (``'convolution_backward'``)."""
    if 'attention' in name:
        return 'attention'
    if name in _MATMULS:
        return 'matmul'
    if 'convolution' in name or name.startswith('_slow_conv'):
        return 'convolution'
    if 'norm' in name and not name.startswith(('linalg', '_foreach', 'norm', 'renorm')):
        return 'normalisation'
    if name.startswith(('upsample', '_upsample')):
        return 'resize'
    if name in _CASTS:
        return 'casts and copies'
    return 'other elementwise and reductions'


def distinct_bytes(tensor: Tensor) -> int:
    """Bytes of the distinct elements a tensor addresses (a broadcast dimension counts once)."""
    elements = math.prod(size for size, stride in zip(tensor.shape, tensor.stride())
                         if stride != 0)
    return 0 if tensor.numel() == 0 else elements * tensor.element_size()


def multi_tensor_launches(numels: Sequence[int], depth: int) -> int:
    """Kernels a ``_foreach_*`` or fused-optimizer call over tensors of ``numels`` launches,
    with ``depth`` tensor lists (ATen's ``multi_tensor_apply`` limits)."""
    if not numels:
        return 0
    per_launch = _MAX_TENSORS_BY_DEPTH[min(max(depth, 1), len(_MAX_TENSORS_BY_DEPTH)) - 1]
    chunks = sum(-(-n // _CHUNK_ELEMENTS) for n in numels)
    return max(-(-len(numels) // per_launch), -(-chunks // _MAX_BLOCKS))


def _tensors(value: object) -> list[Tensor]:
    return [leaf for leaf in pytree.tree_leaves(value) if isinstance(leaf, Tensor)]


def op_traffic(func: torch._ops.OpOverload, args: tuple, kwargs: dict,
               out: object) -> tuple[int, int]:
    """The least bytes ``func`` reads and writes: (read, written).

    Every tensor argument is read once (a tensor passed twice, once) and every result written
    once; mutated arguments are written (and read, unless the operator only overwrites them:
    ``copy_``, fills, ``out=``). A gather (``embedding``, ``index``, ...) reads at most as much
    of its table as it writes. Views, allocations and operators without tensor results or
    mutations move nothing.
    """
    name = func._overloadpacket.__name__
    if func.is_view or name in _FREE:
        return 0, 0
    inputs: dict[int, int] = {}  # tensor id -> bytes, each tensor once
    mutated: dict[int, int] = {}
    overwritten: set[int] = set()
    positional = iter(args)
    for argument in func._schema.arguments:
        if argument.kwarg_only:
            value = kwargs.get(argument.name)
        else:
            value = next(positional, kwargs.get(argument.name))
        is_write = argument.alias_info is not None and argument.alias_info.is_write
        for tensor in _tensors(value):
            nbytes = distinct_bytes(tensor)
            if is_write:
                mutated[id(tensor)] = nbytes
                if argument.is_out or name in _WRITE_ONLY:
                    overwritten.add(id(tensor))
                    continue
            inputs[id(tensor)] = nbytes
    results = {id(t): distinct_bytes(t) for t in _tensors(out) if id(t) not in mutated}
    if not results and not mutated:
        return 0, 0
    for key in overwritten:
        inputs.pop(key, None)
    written = sum(mutated.values()) + sum(results.values())
    if name in _GATHERS:
        table = args[0] if args and isinstance(args[0], Tensor) else None  # the first always
        if table is not None and id(table) in inputs:
            inputs[id(table)] = min(inputs[id(table)], written)
    return sum(inputs.values()), written


def _compute_dtype(args: tuple, kwargs: dict) -> torch.dtype | None:
    return next((t.dtype for t in _tensors((args, kwargs)) if t.is_floating_point()), None)


def peak_flops(spec: DeviceSpec, dtype: torch.dtype | None, category: str) -> float:
    """FLOP/s an operator of ``category`` can reach at ``dtype`` on ``spec``.

    float32 matmuls use TF32 when ``torch.get_float32_matmul_precision()`` allows it,
    convolutions when ``torch.backends.cudnn.allow_tf32`` does (this process's settings, as
    a run in it would use them).
    """
    if dtype in (torch.bfloat16, torch.float16):
        return spec.half_tflops * 1e12
    if category == 'convolution':
        tf32 = torch.backends.cudnn.allow_tf32
    else:
        tf32 = torch.get_float32_matmul_precision() != 'highest'
    return (spec.tf32_tflops if tf32 else spec.fp32_tflops) * 1e12


@dataclass
class CostTotals:
    """What a group of operators adds up to."""
    ops: int = 0
    kernels: int = 0
    flops: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    seconds: float = 0.0
    compute_seconds: float = 0.0  # of the matmuls, convolutions and attention among them

    def absorb(self, other: 'CostTotals') -> None:
        """Add another group's totals (or one operator's cost) to this one."""
        for item in fields(self):
            setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))

    @property
    def bytes(self) -> int:
        return self.bytes_read + self.bytes_written


class RooflineCounter(MetaPlaceholders):
    """Counts FLOPs, least memory traffic and kernels of every operator, and their roofline time.

    A dispatch mode for a step run on ``meta`` (value-dependent calls get
    :class:`~madm.utils.host_sync_audit.MetaPlaceholders`' stand-ins). Composite operators
    are decomposed as :class:`~torch.utils.flop_counter.FlopCounterMode` does, so the FLOPs
    are the same as its count. Totals are kept by phase and category (:attr:`totals`) and by
    operator (:attr:`by_op`); operators run inside :meth:`phase` ``('optimizer')`` count as
    ``'optimizer'`` whatever they are. Operators are also summed by phase and part
    (:attr:`by_part`, :meth:`current_part`): those run inside :meth:`part` (e.g. a module's
    forward, :func:`count_parts`) by that part; those autograd runs for a node (backward) by
    the part in which the forward created the node, or in which a leaf's gradient accumulates
    (:meth:`leaf_parts`); the others by ``'other'``. This assumes that the nodes are created on
    one thread, as a ``meta`` step's are (autograd runs its backward on the calling thread).

    Args:
        spec (DeviceSpec): The device whose peaks turn counts into seconds.
    """

    def __init__(self, spec: DeviceSpec) -> None:
        super().__init__()
        self.spec = spec
        self.totals: dict[tuple[str, str], CostTotals] = defaultdict(CostTotals)
        self.by_op: dict[str, CostTotals] = defaultdict(CostTotals)
        self.by_part: dict[tuple[str, str], CostTotals] = defaultdict(CostTotals)
        self._phase = 'forward'
        self._parts: list[str] = []
        self._counting = True
        # Nodes numbered from _node_bounds[i - 1] up to _node_bounds[i] were created in part
        # _node_parts[i]: a run per change of part, not an entry per node.
        self._node_bounds: list[int] = []
        self._node_parts: list[str] = []
        self._node_thread: int | None = None  # whose numbering the bounds are
        self._leaf_parts: dict[int, str] = {}  # id of a leaf tensor -> its part

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Count the operators run inside as phase ``name`` (one of :data:`PHASES`)."""
        if name not in PHASES:
            raise ValueError(f'phase must be one of {PHASES}, got {name!r}.')
        previous, self._phase = self._phase, name
        try:
            yield
        finally:
            self._phase = previous

    @contextlib.contextmanager
    def part(self, name: str) -> Iterator[None]:
        """Attribute the operators run inside to part ``name`` (the innermost part wins)."""
        self.enter_part(name)
        try:
            yield
        finally:
            self.exit_part()

    def enter_part(self, name: str) -> None:
        """Start part ``name``, as :meth:`part` does; pair with :meth:`exit_part`."""
        self._note_new_nodes()
        self._parts.append(name)

    def exit_part(self) -> None:
        """End the innermost part."""
        self._note_new_nodes()
        self._parts.pop()

    @contextlib.contextmanager
    def leaf_parts(self, parts: dict[Tensor, str]) -> Iterator[None]:
        """Count the accumulation of each leaf's gradient (autograd's ``AccumulateGrad``, e.g.
        a parameter's) as the given part; elsewhere it counts as ``'other'``.

        Args:
            parts (dict[Tensor, str]): Each leaf tensor (a parameter, an input that requires
                grad) with the name of the part its gradient accumulation counts for, within
                the ``with`` block.

        Yields:
            None: The block in which these leaves count for these parts; the previous
            assignment comes back at its end.
        """
        previous = dict(self._leaf_parts)
        self._leaf_parts.update((id(leaf), name) for leaf, name in parts.items())
        try:
            yield
        finally:
            self._leaf_parts = previous

    def current_part(self) -> str:
        """The part operators run now count for: the innermost one entered; else, while
        autograd runs a node (backward), the node's part (:meth:`node_part`); else 'other'.

        Gradient checkpointing's recomputation runs inside backward: the parts its forwards
        enter, or else the part of the node whose saved tensors it recomputes.
        """
        if self._parts:
            return self._parts[-1]
        node = torch._C._current_autograd_node()
        return 'other' if node is None else self.node_part(node)

    def node_part(self, node: torch.autograd.graph.Node) -> str:
        """The part that was current when autograd created ``node`` ('other' when none was
        or the counter did not see it); a leaf's gradient accumulator has its leaf's part.

        Args:
            node (torch.autograd.graph.Node): A node of the autograd graph, e.g. the one
                ``torch._C._current_autograd_node()`` gives while backward runs.

        Returns:
            str: The part's name.
        """
        if isinstance(node, torch._C._functions.AccumulateGrad):
            # numbered last of all, so that the engine runs it as soon as it is ready
            return self._leaf_parts.get(id(node.variable), 'other')
        index = bisect.bisect_right(self._node_bounds, node._sequence_nr())
        return self._node_parts[index] if index < len(self._node_parts) else 'other'

    def _note_new_nodes(self) -> None:
        """Assign the nodes autograd created since the last call to the current part.

        Called before every operator and change of part: an operator's node is created
        before the operator reaches a dispatch mode, and no part changes between the two (an
        in-place operator on a view makes its ``CopySlices`` node after, which the next call
        notes, still in the operator's part if the part changed after it).
        """
        number = torch._C._autograd._get_sequence_nr()  # the next node's
        bounds = self._node_bounds
        if bounds and number <= bounds[-1]:
            return  # no node since the last call
        thread = threading.get_ident()
        if self._node_thread is None:
            self._node_thread = thread
        elif thread != self._node_thread:
            return  # numbered by another thread's counter
        part = self.current_part()
        if self._node_parts and self._node_parts[-1] == part:
            bounds[-1] = number
        else:
            bounds.append(number)
            self._node_parts.append(part)

    @contextlib.contextmanager
    def not_counted(self) -> Iterator[None]:
        """Run operators without counting them (what :meth:`add` accounts for instead)."""
        previous, self._counting = self._counting, False
        try:
            yield
        finally:
            self._counting = previous

    def add(self, name: str, category: str, *, flops: int, read: int, written: int,
            kernels: int, dtype: torch.dtype | None = None) -> None:
        """Add one operator's cost to the current phase."""
        if self._phase == 'optimizer':
            category = 'optimizer'
        compute = flops / peak_flops(self.spec, dtype, category) if flops else 0.0
        seconds = max(compute, (read + written) / (self.spec.bandwidth_tbs * 1e12))
        cost = CostTotals(ops=1, kernels=kernels, flops=flops, bytes_read=read,
                          bytes_written=written, seconds=seconds,
                          compute_seconds=seconds if category in COMPUTE_CATEGORIES else 0.0)
        self.totals[(self._phase, category)].absorb(cost)
        self.by_op[name].absorb(cost)
        self.by_part[(self._phase, self.current_part())].absorb(cost)

    def add_fused_adamw(self, param_groups: Sequence[Sequence[Tensor]]) -> None:
        """One fused AdamW update: each parameter with a gradient reads itself, its gradient
        and both moments and writes itself and the moments. The kernel runs once per
        parameter group, so its launches add up over the groups."""
        if self not in _get_current_dispatch_mode_stack():
            return  # a step run outside the counter (the warm-up one)
        groups = [[p for p in group if p.grad is not None] for group in param_groups]
        params = [p for group in groups for p in group]
        read = sum(distinct_bytes(p) * 3 + distinct_bytes(p.grad) for p in params)
        written = sum(distinct_bytes(p) * 3 for p in params)  # moments in the param dtype
        kernels = sum(multi_tensor_launches([p.numel() for p in group], depth=4)
                      for group in groups)
        with self.phase('optimizer'):
            self.add('_fused_adamw_', 'optimizer', flops=0, read=read, written=written,
                     kernels=kernels)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self._note_new_nodes()
        if self._counting:
            with self:
                decomposed = func.decompose(*args, **kwargs)
            if decomposed is not NotImplemented:
                return decomposed
        out = super().__torch_dispatch__(func, types, args, kwargs)
        if self._counting:
            self._count(func, args, kwargs, out)
        return out

    def _count(self, func, args: tuple, kwargs: dict, out: object) -> None:
        if not any(t.device.type == 'meta' for t in _tensors((args, kwargs, out))):
            return  # host tensors (e.g. AdamW's step counts): no kernel on the device
        packet = func._overloadpacket
        name = packet.__name__
        read, written = op_traffic(func, args, kwargs, out)
        flops = int(FLOP_FORMULAS[packet](*args, **kwargs, out_val=out)) \
            if packet in FLOP_FORMULAS else 0
        if not (read or written or flops):
            return
        if name.startswith('_foreach_'):
            lists = [a for a in (*args, *kwargs.values())
                     if isinstance(a, (list, tuple)) and a and isinstance(a[0], Tensor)]
            numels = [t.numel() for t in lists[0]] if lists else []
            # an output list as large as the inputs is one more list for the kernel to walk
            outputs = out if isinstance(out, (list, tuple)) else []
            out_list = int(bool(outputs) and [t.numel() for t in outputs] == numels)
            kernels = multi_tensor_launches(numels, depth=len(lists) + out_list) if lists \
                else 1
        else:
            kernels = 1
        self.add(name, op_category(name), flops=flops, read=read, written=written,
                 kernels=kernels, dtype=_compute_dtype(args, kwargs))

    def summary(self, model_flops: int | None = None, top: int = 12) -> dict:
        """The bounds, MFU ceilings and breakdowns.

        Args:
            model_flops (int | None): FLOPs of the step without recomputation, the numerator
                of MFU; defaults to the FLOPs counted here.
            top (int): How many operators, by roofline time, to list. Defaults to 12.

        Returns:
            dict: ``eager_bound_s`` (every operator), ``compute_bound_s`` (matmuls,
            convolutions and attention only), ``executed_flops``, ``model_flops``,
            ``bytes``, ``kernels``, ``mfu_ceiling_eager``, ``mfu_ceiling_fused``,
            ``by_category``, ``by_phase`` and ``by_part`` (each ``ops``, ``kernels``,
            ``flops``, ``bytes``, ``seconds``, ``compute_seconds``; ``by_part`` is keyed
            ``'<phase>: <part>'``, largest first), ``top_ops`` and ``device``.
        """
        def as_dict(totals: CostTotals) -> dict:
            return dict(ops=totals.ops, kernels=totals.kernels, flops=totals.flops,
                        bytes=totals.bytes, seconds=totals.seconds,
                        compute_seconds=totals.compute_seconds)

        by_category: dict[str, CostTotals] = defaultdict(CostTotals)
        by_phase: dict[str, CostTotals] = defaultdict(CostTotals)
        for (phase, category), totals in self.totals.items():
            by_category[category].absorb(totals)
            by_phase[phase].absorb(totals)
        eager = sum(t.seconds for t in by_category.values())
        compute = sum(t.compute_seconds for t in by_category.values())
        executed = sum(t.flops for t in by_category.values())
        model_flops = executed if model_flops is None else model_flops
        peak = self.spec.half_tflops * 1e12
        ranked = sorted(self.by_op.items(), key=lambda item: -item[1].seconds)[:top]
        return dict(
            device=self.spec.name, eager_bound_s=eager, compute_bound_s=compute,
            executed_flops=executed, model_flops=model_flops,
            bytes=sum(t.bytes for t in by_category.values()),
            kernels=sum(t.kernels for t in by_category.values()),
            mfu_ceiling_eager=model_flops / eager / peak if eager else None,
            mfu_ceiling_fused=model_flops / compute / peak if compute else None,
            by_category={c: as_dict(by_category[c]) for c in CATEGORIES if c in by_category},
            by_phase={p: as_dict(by_phase[p]) for p in PHASES if p in by_phase},
            by_part={f'{phase}: {part}': as_dict(t) for (phase, part), t in sorted(
                self.by_part.items(),
                key=lambda item: (PHASES.index(item[0][0]), -item[1].seconds))},
            top_ops=[dict(op=name, **as_dict(t)) for name, t in ranked])


@contextlib.contextmanager
def count_parts(counter: RooflineCounter, parts: dict[torch.nn.Module, str]) -> Iterator[None]:
    """Attribute what each module's forward runs to its part of ``counter``, and the backward
    of what it runs, and the accumulation of its parameters' gradients.

    Args:
        counter (RooflineCounter): The counter.
        parts (dict[nn.Module, str]): Part name of each module; in a module inside another,
            the inner module's part wins.
    """
    handles = []
    leaves: dict[Tensor, str] = {}
    # The inner module's part wins; a module inside another has fewer modules in it.
    for module, name in sorted(parts.items(), key=lambda item: -len(list(item[0].modules()))):
        leaves.update(dict.fromkeys(module.parameters(), name))
    # Calls whose part was entered and not yet ended, per module: the end hook always runs
    # (also when the forward raises), but the start hook does not if an earlier pre-hook raised.
    open_calls: dict[torch.nn.Module, int] = defaultdict(int)

    def start(module: torch.nn.Module, args: tuple, name: str) -> None:
        open_calls[module] += 1
        counter.enter_part(name)

    def end(module: torch.nn.Module, args: tuple, output: object) -> None:
        if open_calls[module]:
            open_calls[module] -= 1
            counter.exit_part()

    for module, name in parts.items():
        handles.append(module.register_forward_pre_hook(
            lambda module, args, name=name: start(module, args, name)))
        handles.append(module.register_forward_hook(end, always_call=True))
    try:
        with counter.leaf_parts(leaves):
            yield
    finally:
        for handle in handles:
            handle.remove()
