"""madm: unsupervised modality adaptation with Stable Diffusion backbones for MMSegmentation.

``import madm`` registers every madm module into mmseg's registries (MODELS,
DATASETS, TRANSFORMS, HOOKS, METRICS, ...). Configs load it with
``custom_imports=dict(imports=['madm'], allow_failed_imports=False)``.
"""
# The mmcv-lite compatibility shim has to run before the first mmseg import.
from .utils import mmcv_compat  # noqa: F401  isort: skip
from . import datasets, engine, evaluation, models  # noqa: F401,E402  register modules
from .version import __version__  # noqa: E402

__all__ = ['__version__']
