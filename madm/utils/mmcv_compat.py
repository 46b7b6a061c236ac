"""Let mmseg 1.2.2 import under ``mmcv-lite`` (mmcv without compiled ops).

mmseg imports ``mmcv.ops`` without a guard in four modules (``point_sample`` three
times, ``sigmoid_focal_loss`` once), so with mmcv-lite ``import mmseg.models``
fails on the missing ``mmcv._ext``. When the real ops are importable this module
does nothing. Otherwise it installs a stand-in ``mmcv.ops`` package that holds:

* the real ``point_sample``/``bilinear_grid_sample``, loaded from mmcv's own
  ``mmcv/ops/point_sample.py`` (that file only needs torch);
* a ``sigmoid_focal_loss`` that raises (mmseg only calls it on CUDA tensors);
* a module ``__getattr__`` raising ``ModuleNotFoundError`` for every other op,
  because mmseg's optional-op guards catch exactly that exception.

It must run before the first ``import mmseg``: ``madm/__init__.py`` imports it first.
"""
import importlib.util
import os.path as osp
import sys
import types
import warnings

#: True when the stand-in is active, i.e. mmcv has no compiled ops.
MMCV_LITE_SHIM_ACTIVE = False


def _install_stand_in() -> None:
    import mmcv

    for name in [n for n in sys.modules if n == 'mmcv.ops' or n.startswith('mmcv.ops.')]:
        del sys.modules[name]
    ops = types.ModuleType('mmcv.ops')
    ops.__path__ = []  # a package, so `mmcv.ops.x` lookups fail cleanly
    ops.__doc__ = 'madm stand-in for mmcv.ops under mmcv-lite (no compiled ops).'
    sys.modules['mmcv.ops'] = ops
    mmcv.ops = ops

    path = osp.join(osp.dirname(mmcv.__file__), 'ops', 'point_sample.py')
    spec = importlib.util.spec_from_file_location('mmcv.ops.point_sample', path)
    module = importlib.util.module_from_spec(spec)
    sys.modules['mmcv.ops.point_sample'] = module
    spec.loader.exec_module(module)
    ops.point_sample = module.point_sample
    ops.bilinear_grid_sample = module.bilinear_grid_sample

    def sigmoid_focal_loss(*args, **kwargs):
        raise NotImplementedError(
            'sigmoid_focal_loss needs compiled mmcv ops; build them with '
            'tools/build_mmcv_ops.sh (see README) or use FocalLoss(use_sigmoid=False).')

    def __getattr__(name: str):
        if name.startswith('__'):
            raise AttributeError(name)
        raise ModuleNotFoundError(
            f'mmcv.ops.{name} needs compiled mmcv ops, but mmcv-lite is installed; '
            'build them with tools/build_mmcv_ops.sh (see README).')

    ops.sigmoid_focal_loss = sigmoid_focal_loss
    ops.__getattr__ = __getattr__


try:
    import mmcv.ops  # noqa: F401
except ImportError:
    _install_stand_in()
    MMCV_LITE_SHIM_ACTIVE = True
    # mmcv's transformer bricks warn once that this op is missing; under the stand-in
    # that is expected, and madm never uses it.
    warnings.filterwarnings('ignore', message='Fail to import ``MultiScaleDeformableAttention``')
