# Synthetic Cityscapes-like RGB (labelled source) -> synthetic FMB-like infrared (target), 9
# classes, at demo scale: data_converters/synthetic.py writes the data under
# $MADM_DEMO_DATA/infrared (default data/demo/infrared); tools/demo.py sets the variable.
# Demo departures from uda_cityscapes_fmb_infrared.py: everything is 128 px wide (source 128x64,
# infrared 128x96, both at their native size) with 64x64 crops, no rare-class sampling
# (the synthetic source has no class-stats files; rare classes are drawn often enough), and
# one loader worker (2 CPU cores).
demo_root = '{{$MADM_DEMO_DATA:data/demo}}'
data_root = demo_root + '/infrared'
cityscapes_root = data_root + '/cityscapes'
fmb_root = data_root + '/FMB'
task = 'infrared'
crop_size = (64, 64)

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
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
# The oracle trains on the target train split with its labels.
oracle_pipeline = [
    dict(type='LoadModalityImage'),
    dict(type='LoadLabelMap'),
    dict(type='MapLabels'),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
# Scored at the native 128x96.
test_pipeline = [
    dict(type='LoadModalityImage'),
    dict(type='LoadLabelMap'),
    dict(type='MapLabels'),
    dict(type='PackSegInputs'),
]
# The unlabelled target train images as the test feeds them (whole, sized as at test): what
# TargetBNStatisticsHook re-estimates batch-norm statistics on (configs/madm/demo_*_adabn.py,
# *_madm-target-bn.py).
target_bn_dataloader = dict(
    batch_size=2, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='FMBInfraredDataset', data_root=fmb_root, split='train',
                 pipeline=[dict(type='LoadModalityImage'), dict(type='PackSegInputs')]))
train_dataloader = dict(
    batch_size=2,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type='UDADataset',
        source=dict(type='CityscapesTaskDataset', task=task, data_root=cityscapes_root,
                    split='train', pipeline=source_pipeline),
        target=dict(type='FMBInfraredDataset', data_root=fmb_root, split='train',
                    pipeline=target_pipeline)))
val_dataloader = dict(
    batch_size=1,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='FMBInfraredDataset', data_root=fmb_root, split='test',
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='ClassIoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
