# Cityscapes RGB (labelled source) -> FMB infrared (unlabelled target), 9 classes.
# Sizes and crops follow the reference (method.md §7, §8). Roots: the MADM_DATA_ROOT
# environment variable (the folder holding cityscapes/ and the target's folder). The variables
# below are copied into the dataloaders when the file is read, so overriding them with
# --cfg-options has no effect; set the dataloaders' keys instead: train_dataloader.dataset.
# {source,target}.data_root, val_dataloader.dataset.data_root, test_dataloader.dataset.data_root.
data_root = '{{$MADM_DATA_ROOT:data}}'
cityscapes_root = data_root + '/cityscapes'
fmb_root = data_root + '/FMB'
task = 'infrared'
crop_size = (512, 512)

# Resizes use PIL (bilinear images, nearest labels), as the reference's dataset does.
source_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='Resize', scale=(1024, 512), keep_ratio=False, backend='pillow'),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='MapLabels'),  # 19 Cityscapes trainIds -> the task's classes (merged, not dropped)
    dict(type='PackSegInputs'),
]
target_pipeline = [
    dict(type='LoadModalityImage'),
    # reference: 800x600 -> 683x512
    dict(type='Resize', scale=(683, 512), keep_ratio=False, backend='pillow'),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
# Reference protocol: image and label squashed to 512x512, scored there (method.md §8.4).
test_pipeline_reference = [
    dict(type='LoadModalityImage'),
    dict(type='LoadLabelMap'),
    dict(type='MapLabels'),
    dict(type='ReferenceEvalResize', scale=(512, 512)),
    dict(type='PackSegInputs'),
]
# Native protocol: the model sees 512x512, predictions are scored at 800x600.
test_pipeline_native = [
    dict(type='LoadModalityImage'),
    dict(type='Resize', scale=(512, 512), keep_ratio=False, backend='pillow'),
    dict(type='LoadLabelMap'),
    dict(type='MapLabels'),
    dict(type='PackSegInputs'),
]
test_pipeline = test_pipeline_reference

train_dataloader = dict(
    batch_size=2,  # reference: 2 GPUs x 1 pair
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type='UDADataset',
        source=dict(type='CityscapesTaskDataset', task=task, data_root=cityscapes_root,
                    split='train', pipeline=source_pipeline),
        target=dict(type='FMBInfraredDataset', data_root=fmb_root, split='train',
                    pipeline=target_pipeline),
        rare_class_sampling=dict(class_temp=0.01, min_pixels=3000, min_crop_pixels=1500,
                                 max_retries=10, class_map='cityscapes_to_9')))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='FMBInfraredDataset', data_root=fmb_root, split='test',
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='ClassIoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
