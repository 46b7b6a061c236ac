from .madm import MADM
from .uda_encoder_decoder import UDAEncoderDecoder

__all__ = ['MADM', 'UDAEncoderDecoder']
