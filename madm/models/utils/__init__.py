from .batchnorm_statistics import batchnorm_layers, recompute_batchnorm_statistics
from .matmul_resize import bilinear_matrix, matmul_resize

__all__ = ['batchnorm_layers', 'bilinear_matrix', 'matmul_resize',
           'recompute_batchnorm_statistics']
