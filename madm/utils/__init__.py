# mmcv_compat must run before anything imports mmseg (see its docstring).
from . import mmcv_compat  # noqa: F401  isort: skip
from .atomic_io import (atomic_path, atomic_write_bytes, atomic_write_image,
                        atomic_write_json, atomic_write_text)
from .paths import MissingDataError, require_dir, require_files
from .runtime import adaptation_seed, get_current_iter

__all__ = [
    'atomic_path', 'atomic_write_bytes', 'atomic_write_image', 'atomic_write_json',
    'atomic_write_text', 'MissingDataError', 'require_dir', 'require_files',
    'adaptation_seed', 'get_current_iter'
]
