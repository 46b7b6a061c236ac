# Runtime defaults shared by every madm config (mmseg's default_runtime plus madm's hooks).
default_scope = 'mmseg'
custom_imports = dict(imports=['madm'], allow_failed_imports=False)
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=42)  # reference seed (method.md §7)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=1000, max_keep_ckpts=1),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # mmseg's SegVisualizationHook, but drawn on the image as scored (e.g. squashed to
    # 512x512 by ReferenceEvalResize); tools/test.py --show/--show-dir turn it on.
    visualization=dict(type='ScoredSegVisualizationHook'))
# Checkpoints load under torch's weights_only=True, resume restores the RNG streams, and the
# parameter schedulers' per-group state resumes across MergedParamGroupsOptimWrapperConstructor.
custom_hooks = [
    dict(type='WeightsOnlyCheckpointHook'),
    dict(type='RNGStateHook'),
    dict(type='MergedParamGroupsSchedulerStateHook'),
]
