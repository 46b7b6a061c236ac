# AdaBN baseline of the infrared demo (test only): the source-only checkpoint scored after its
# batch-norm statistics are re-estimated on the unlabelled infrared train images. No gradient
# step and no label: it shows how much plain target statistics give.
#   python tools/test.py configs/madm/demo_rgb2infrared_adabn.py <source-only checkpoint>
_base_ = ['./demo_rgb2infrared_source-only.py']
custom_hooks = [  # a list is replaced, not merged: the runtime's hooks, then the new one
    dict(type='WeightsOnlyCheckpointHook'),
    dict(type='RNGStateHook'),
    dict(type='MergedParamGroupsSchedulerStateHook'),
    dict(type='TargetBNStatisticsHook', dataloader={{_base_.target_bn_dataloader}}),
]
