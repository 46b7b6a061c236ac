# MADM + target BN, depth demo (test only; not in MADM): the MADM checkpoint scored after its
# student's batch-norm statistics are re-estimated on the unlabelled depth train images. Its
# running statistics come from the source and the mixed batches it trained on (pasted and
# colour-jittered), while the test feeds clean target images; the teacher already
# normalises with target batch statistics (teacher_mode='train').
#   python tools/test.py configs/madm/demo_rgb2depth_madm-target-bn.py <MADM checkpoint>
_base_ = ['./demo_rgb2depth.py']
custom_hooks = [  # a list is replaced, not merged: the runtime's hooks, then the new one
    dict(type='WeightsOnlyCheckpointHook'),
    dict(type='RNGStateHook'),
    dict(type='MergedParamGroupsSchedulerStateHook'),
    dict(type='TargetBNStatisticsHook', dataloader={{_base_.target_bn_dataloader}}),
]
