from .bottleneck_projection import BottleneckProjection

__all__ = ['BottleneckProjection']
