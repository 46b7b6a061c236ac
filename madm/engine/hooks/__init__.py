from .compile_modules_hook import CompileModulesHook
from .deferred_runtime_info_hook import DeferredRuntimeInfoHook
from .merged_param_groups_scheduler_state_hook import MergedParamGroupsSchedulerStateHook
from .rng_state_hook import RNGStateHook
from .scored_seg_visualization_hook import ScoredSegVisualizationHook
from .target_bn_statistics_hook import TargetBNStatisticsHook
from .uda_visualization_hook import UDAVisualizationHook
from .weights_only_checkpoint_hook import WeightsOnlyCheckpointHook

__all__ = ['CompileModulesHook', 'DeferredRuntimeInfoHook',
           'MergedParamGroupsSchedulerStateHook', 'RNGStateHook', 'ScoredSegVisualizationHook',
           'TargetBNStatisticsHook', 'UDAVisualizationHook', 'WeightsOnlyCheckpointHook']
