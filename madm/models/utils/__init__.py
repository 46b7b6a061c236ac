from .batchnorm_statistics import recompute_batchnorm_statistics
from .matmul_resize import bilinear_matrix, matmul_resize

__all__ = ['bilinear_matrix', 'matmul_resize', 'recompute_batchnorm_statistics']
