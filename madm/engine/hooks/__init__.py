from .rng_state_hook import RNGStateHook
from .uda_visualization_hook import UDAVisualizationHook
from .weights_only_checkpoint_hook import WeightsOnlyCheckpointHook

__all__ = ['RNGStateHook', 'UDAVisualizationHook', 'WeightsOnlyCheckpointHook']
