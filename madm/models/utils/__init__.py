from .matmul_resize import bilinear_matrix, matmul_resize

__all__ = ['bilinear_matrix', 'matmul_resize']
