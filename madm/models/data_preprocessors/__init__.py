from .uda_data_preprocessor import UDASegDataPreProcessor

__all__ = ['UDASegDataPreProcessor']
