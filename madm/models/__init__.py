from . import (backbones, data_preprocessors, decode_heads, losses, necks,  # noqa: F401
               segmentors, uda, utils)
