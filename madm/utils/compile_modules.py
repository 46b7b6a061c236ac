"""``torch.compile`` chosen submodules of a model in place, found by name."""
import fnmatch
from collections.abc import Sequence

from torch import nn

# CUDA graphs replay into static output buffers that the next replay overwrites. A UDA step
# calls one compiled module more than once before its backward (the student's UNet on the
# source and then on the mixed images), so the first call's outputs would not survive.
CUDA_GRAPH_MODES = ('reduce-overhead', 'max-autotune')
COMPILE_MODES = ('default', 'max-autotune-no-cudagraphs')
# Blocks of one class share their forward's code, and dynamo compiles that code once per
# input shape and grad mode (static shapes): SD-1.4's up path alone has 8 ResNet-block
# shapes, run with grad (student) and without (teacher), past dynamo's default limit of 8,
# beyond which it runs the code eagerly with only a warning. Each further guard state adds
# about 14 ResNet-block entries: an input size (validation, inference), grad mode, the
# teacher's frozen copy under teacher_scope='full'. The benchmark's default run needs ~56.
RECOMPILE_LIMIT = 128

# The compute-heavy parts of a MADM model, by name: each matches the EMA teacher's copy too
# where it has one (the heads always, UNet and VAE with ``teacher_scope='full'``).
# The UNet by block: its ResNet blocks, transformers (``attentions``), down- and upsamplers,
# each its own graph, so that every feature tap (a block's output) ends a graph. Compiled as
# one graph (UNET_MODULES), a tapped output that the rest of the UNet also uses got wrong
# gradients from inductor on a CPU with PyTorch 2.13: a fused kernel read the gradient buffer
# of the next upsampler before the upsampler's backward had written it
# (madm/utils/inductor_check.py reproduces it in a few lines).
UNET_BLOCK_MODULES = ('*backbone.unet.*.resnets.*', '*backbone.unet.*.attentions.*',
                      '*backbone.unet.*.downsamplers.*', '*backbone.unet.*.upsamplers.*')
UNET_MODULES = ('*backbone.unet', )
HEAD_MODULES = ('*decode_head', )
VAE_MODULES = ('*backbone.vae.encoder', '*backbone.vae.decoder')


def check_compile_mode(mode: str, allow_cuda_graphs: bool = False) -> None:
    """Raise a ValueError for an unknown mode, or a CUDA-graph mode unless allowed."""
    if mode in CUDA_GRAPH_MODES and not allow_cuda_graphs:
        raise ValueError(
            f'Compile mode {mode!r} records CUDA graphs, whose outputs the next replay '
            'overwrites, and a UDA step calls the same module twice before its backward (the '
            f'student on the source and on the mixed images); use one of {COMPILE_MODES}.')
    if mode not in COMPILE_MODES + CUDA_GRAPH_MODES:
        raise ValueError(f'Unknown compile mode {mode!r}; expected one of {COMPILE_MODES}.')


def find_submodules(model: nn.Module, patterns: Sequence[str],
                    strict: bool = True) -> list[tuple[str, nn.Module]]:
    """The submodules whose dotted names match ``patterns``, outermost only.

    Args:
        model (nn.Module): The model to search (not a DDP wrapper: unwrap it first).
        patterns (Sequence[str]): Dotted names as in ``model.named_modules()``
            (``'backbone.unet'``), or ``fnmatch`` patterns (``'*decode_head'`` matches the
            student's ``decode_head`` and the EMA teacher's ``teacher.decode_head``).
        strict (bool): Every pattern must match; otherwise only one of them must.
            Defaults to True.

    Returns:
        list[tuple[str, nn.Module]]: ``(name, module)`` in the order of ``patterns``. A match
        inside another match is left out, as compiling the outer module covers it.

    Raises:
        ValueError: A pattern matches no submodule (with ``strict``, or none of them does);
            the message lists the model's top-level children.
    """
    if isinstance(patterns, str) or not patterns:
        raise ValueError(f'patterns must be a non-empty list of module names, got {patterns!r}.')
    names = [name for name, _ in model.named_modules() if name]
    chosen: list[str] = []
    for pattern in patterns:
        hits = [name for name in names if fnmatch.fnmatchcase(name, pattern)]
        if not hits and strict:
            raise ValueError(_no_match(model, repr(pattern)))
        chosen += [name for name in hits if name not in chosen]
    if not chosen:
        raise ValueError(_no_match(model, ' or '.join(map(repr, patterns))))
    outermost = [name for name in chosen
                 if not any(name.startswith(other + '.') for other in chosen)]
    return [(name, model.get_submodule(name)) for name in outermost]


def _no_match(model: nn.Module, what: str) -> str:
    children = ', '.join(name for name, _ in model.named_children())
    return (f'No submodule of {type(model).__name__} is named {what}. Names are dotted paths '
            f'from the model (its top-level modules: {children}), e.g. '
            "'backbone.unet' or the pattern '*decode_head'.")


def compile_submodules(model: nn.Module,
                       patterns: Sequence[str],
                       mode: str = 'default',
                       dynamic: bool | None = False,
                       backend: str = 'inductor',
                       fullgraph: bool = False,
                       allow_cuda_graphs: bool = False,
                       strict: bool = True,
                       recompile_limit: int | None = RECOMPILE_LIMIT) -> list[str]:
    """``torch.compile`` the matching submodules in place (``nn.Module.compile``).

    In place, the modules keep their identity and their ``state_dict`` keys (no
    ``_orig_mod.`` prefix), so checkpoints load into an eager model and back, the EMA teacher
    still pairs its parameters with the student's, and forward hooks on a compiled module's
    children (the backbone's feature taps) still fire. A module that is already compiled is
    left as it is rather than compiled again.

    Args:
        model (nn.Module): The model (unwrapped from DDP).
        patterns (Sequence[str]): Module names or patterns, see :func:`find_submodules`.
        mode (str): ``'default'`` or ``'max-autotune-no-cudagraphs'``; the CUDA-graph modes
            only with ``allow_cuda_graphs`` (see ``CUDA_GRAPH_MODES``). Defaults to
            ``'default'``.
        dynamic (bool | None): ``torch.compile``'s ``dynamic``. Defaults to False: training
            crops have one size, and a second size (validation) compiles its own graph; with
            dynamic shapes SD-1.4's UNet recompiled for more than 220 s on an H100.
        backend (str): ``torch.compile``'s backend; ``mode`` applies to ``'inductor'`` only.
            Defaults to ``'inductor'``.
        fullgraph (bool): Fail on a graph break instead of splitting the graph. Defaults to
            False.
        allow_cuda_graphs (bool): Accept the CUDA-graph modes, for a caller that marks each
            step's start and reads no output across steps (``tools/benchmark.py`` timing a
            step). Defaults to False.
        strict (bool): See :func:`find_submodules`. Defaults to True.
        recompile_limit (int | None): ``torch.compile``'s ``recompile_limit`` for these
            modules: how many graphs (shapes, grad modes) one forward's code may have before
            dynamo runs it eagerly. None: dynamo's global setting (8 by default). Defaults
            to ``RECOMPILE_LIMIT`` (128).

    Returns:
        list[str]: The names of the modules compiled by this call.
    """
    check_compile_mode(mode, allow_cuda_graphs)
    compiled = []
    for name, module in find_submodules(model, patterns, strict):
        # nn.Module.compile keeps its compiled call here; a second call would recompile.
        if getattr(module, '_compiled_call_impl', None) is not None:
            continue
        options = dict(mode=mode) if backend == 'inductor' else {}
        module.compile(dynamic=dynamic, backend=backend, fullgraph=fullgraph,
                       recompile_limit=recompile_limit, **options)
        compiled.append(name)
    return compiled
