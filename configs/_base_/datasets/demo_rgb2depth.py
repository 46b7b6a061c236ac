# Synthetic Cityscapes-like RGB (labelled source) -> synthetic DELIVER-like depth (target), 11
# classes, at demo scale: data_converters/synthetic.py writes the data under
# $MADM_DEMO_DATA/depth (default data/demo/depth); tools/demo.py sets the variable.
# Demo departures from uda_cityscapes_deliver_depth.py: everything is 128 px wide (source 128x64;
# the square 128x128 depth is resized to the source's 128x64 frame, as the event demo does, so
# that the horizon and object scales match the source's) with 64x64 crops, no rare-class sampling
# (the synthetic source has no class-stats files; rare classes are drawn often enough), and
# one loader worker (2 CPU cores).
demo_root = '{{$MADM_DEMO_DATA:data/demo}}'
data_root = demo_root + '/depth'
cityscapes_root = data_root + '/cityscapes'
deliver_root = data_root + '/DELIVER'
task = 'depth'
crop_size = (64, 64)
target_resize = dict(type='Resize', scale=(128, 64), keep_ratio=False)

source_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='MapLabels'),  # 19 Cityscapes trainIds -> the task's classes
    dict(type='PackSegInputs'),
]
target_pipeline = [
    dict(type='LoadModalityImage'),
    target_resize,
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
# The oracle trains on the target train split with its labels.
oracle_pipeline = [
    dict(type='LoadModalityImage'),
    dict(type='LoadLabelMap', channel='red'),  # class id + 1 in the red channel
    dict(type='MapLabels'),
    target_resize,
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
# The model sees 128x64; predictions are scored at the labels' native 128x128.
test_pipeline = [
    dict(type='LoadModalityImage'),
    target_resize,
    dict(type='LoadLabelMap', channel='red'),
    dict(type='MapLabels'),
    dict(type='PackSegInputs'),
]
# The unlabelled target train images as the test feeds them (whole, sized as at test): what
# TargetBNStatisticsHook re-estimates batch-norm statistics on (configs/madm/demo_*_adabn.py,
# *_madm-target-bn.py).
target_bn_dataloader = dict(
    batch_size=2, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='DELIVERDepthDataset', data_root=deliver_root, split='train',
                 pipeline=[dict(type='LoadModalityImage'), target_resize,
                           dict(type='PackSegInputs')]))
train_dataloader = dict(
    batch_size=2,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type='UDADataset',
        source=dict(type='CityscapesTaskDataset', task=task, data_root=cityscapes_root,
                    split='train', pipeline=source_pipeline),
        target=dict(type='DELIVERDepthDataset', data_root=deliver_root, split='train',
                    pipeline=target_pipeline)))
val_dataloader = dict(
    batch_size=1,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='DELIVERDepthDataset', data_root=deliver_root, split='test',
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='ClassIoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
