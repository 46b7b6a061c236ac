"""``torch.compile`` of chosen submodules for training and testing (issue 8)."""
import fnmatch
from collections.abc import Sequence

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner
from mmseg.registry import HOOKS

from madm.utils.compile_modules import (HEAD_MODULES, RECOMPILE_LIMIT, UNET_BLOCK_MODULES,
                                        UNET_MODULES, VAE_MODULES, check_compile_mode,
                                        compile_submodules)

# Compiled by default: the UNet block by block, the student's and the teacher's decode heads
# and the frozen VAE's encoder and decoder (half the step's bound at fusion stride 4,
# docs/benchmarks.md). The neck's projections are small and stay eager. The UNet as one graph
# (UNET_MODULES) got wrong gradients from inductor on a CPU (PyTorch 2.13; see
# UNET_BLOCK_MODULES); `tools/check_inductor_gradients.py` checks a device in seconds.
DEFAULT_MODULES = UNET_BLOCK_MODULES + HEAD_MODULES + VAE_MODULES
__all__ = ['CompileModulesHook', 'DEFAULT_MODULES', 'UNET_BLOCK_MODULES', 'UNET_MODULES']


@HOOKS.register_module()
class CompileModulesHook(Hook):
    """``torch.compile`` named submodules of the model in place, before training or testing.

    mmengine's ``compile=True`` compiles the whole ``train_step``, which for a UDA step means
    tracing the EMA update, ClassMix's random choices and the optimizer with their Python
    control flow. This hook compiles only the modules that carry the compute, with
    ``nn.Module.compile``: parameters, ``state_dict`` keys and checkpoints stay those of the
    eager model, so a compiled run resumes an eager run's checkpoint and the other way round,
    and the EMA teacher pairs its parameters with the student's as before. The first
    iterations are slow while the graphs compile (a benchmark variant that compiled SD-1.4's
    whole UNet and head took 230-236 s on an H100; the defaults' time is unmeasured); a
    validation or test image of another size compiles its own graphs. The UNet compiles block
    by block (``DEFAULT_MODULES``), so that each feature tap ends a graph.

    Args:
        modules (Sequence[str] | None): Dotted module names or ``fnmatch`` patterns, matched
            against the model's ``named_modules()``
            (:func:`madm.utils.compile_modules.find_submodules`); each must match at least one
            module. None: ``DEFAULT_MODULES``, the UNet's blocks, the decode heads and the
            VAE, of which a model without them (any mmseg segmentor) compiles what it has.
            Defaults to None.
        mode (str): ``'default'`` or ``'max-autotune-no-cudagraphs'``. CUDA graphs
            (``'reduce-overhead'``) are refused. Defaults to ``'default'``.
        dynamic (bool | None): ``torch.compile``'s ``dynamic``. Defaults to False.
        backend (str): ``torch.compile``'s backend (``'aot_eager'`` checks tracing without
            generating kernels). Defaults to ``'inductor'``.
        fullgraph (bool): Fail on a graph break. Defaults to False.
        recompile_limit (int | None): Graphs one forward's code may have (blocks of one class
            share it: one per input shape and grad mode) before dynamo runs it eagerly with
            only a warning; None: dynamo's global setting. Defaults to ``RECOMPILE_LIMIT``.
    """

    priority = 'VERY_HIGH'  # before any other hook runs the model

    def __init__(self,
                 modules: Sequence[str] | None = None,
                 mode: str = 'default',
                 dynamic: bool | None = False,
                 backend: str = 'inductor',
                 fullgraph: bool = False,
                 recompile_limit: int | None = RECOMPILE_LIMIT) -> None:
        if isinstance(modules, str) or (modules is not None and not modules):
            raise ValueError(f'modules must be a non-empty list of names, got {modules!r}.')
        self.strict = modules is not None
        self.modules = list(DEFAULT_MODULES if modules is None else modules)
        self.compile_kwargs = dict(mode=mode, dynamic=dynamic, backend=backend,
                                   fullgraph=fullgraph, recompile_limit=recompile_limit)
        check_compile_mode(mode)  # now, not after the data and the model are built

    def before_train(self, runner: Runner) -> None:
        self._compile(runner)

    def before_val(self, runner: Runner) -> None:
        self._compile(runner)

    def before_test(self, runner: Runner) -> None:
        self._compile(runner)

    def _compile(self, runner: Runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        compiled = compile_submodules(model, self.modules, strict=self.strict,
                                      **self.compile_kwargs)
        if compiled:
            print_log(f'torch.compile ({self.compile_kwargs}): '
                      f'{summarize_names(compiled, self.modules)}. The first iterations of '
                      'each input size are slow while their graphs compile.', logger='current')


def summarize_names(names: Sequence[str], patterns: Sequence[str]) -> str:
    """``names`` for a log line: a pattern that matched several as ``'pattern (count)'``."""
    parts, left = [], list(names)
    for pattern in patterns:
        hits = [name for name in left if fnmatch.fnmatchcase(name, pattern)]
        left = [name for name in left if name not in hits]
        if len(hits) > 1 and any(char in pattern for char in '*?['):
            parts.append(f'{pattern} ({len(hits)})')
        else:
            parts.extend(hits)
    return ', '.join(parts + left)
