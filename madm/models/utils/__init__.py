from .batchnorm_statistics import batchnorm_layers, recompute_batchnorm_statistics
from .group_norm import AutocastGroupNorm, set_group_norm_precision, use_autocast_group_norm
from .host_copy import to_device_async
from .matmul_resize import bilinear_matrix, matmul_resize

__all__ = ['AutocastGroupNorm', 'batchnorm_layers', 'bilinear_matrix', 'matmul_resize',
           'recompute_batchnorm_statistics', 'set_group_norm_precision',
           'to_device_async', 'use_autocast_group_norm']
