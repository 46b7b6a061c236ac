# MADM with the tiny SD preset on generic img_dir/ann_dir data (source and target), for
# end-to-end and resume tests. `source_root`/`target_root` are set with --cfg-options.
_base_ = ['../../../configs/_base_/default_runtime.py']

crop_size = (64, 64)
metainfo = dict(classes=('a', 'b', 'c'), palette=[[255, 0, 0], [0, 255, 0], [0, 0, 255]])
model = dict(
    type='MADM',
    palette=[[255, 0, 0], [0, 255, 0], [0, 0, 255]],
    data_preprocessor=dict(type='UDASegDataPreProcessor', mean=[0, 0, 0], std=[255, 255, 255],
                           bgr_to_rgb=True, pad_val=0, seg_pad_val=255, size=crop_size),
    backbone=dict(type='StableDiffusionBackbone', preset='tiny'),
    neck=dict(type='BottleneckProjection', in_channels=[3, 32, 64, 64],
              out_channels=[16, 32, 32, 32], bottleneck_channels=16,
              norm_cfg=dict(type='GN', num_groups=8)),
    decode_head=dict(type='DAFormerHead', in_channels=[16, 32, 32, 32], in_index=[0, 1, 2, 3],
                     channels=32, embed_dims=16, num_classes=3, dropout_ratio=0.1,
                     norm_cfg=dict(type='BN', requires_grad=True), align_corners=False,
                     loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    dplg=dict(start_timestep_range=(60, 61), end_iter=5),
    lplr=dict(source_weight=1.0, mixed_weight=1.0),
    test_cfg=dict(mode='whole'))

source_pipeline = [
    dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
    dict(type='RandomCrop', crop_size=crop_size), dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')]
target_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomCrop', crop_size=crop_size), dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')]
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                 dict(type='PackSegInputs')]
dataset = dict(type='BaseSegDataset', metainfo=metainfo, img_suffix='.png', seg_map_suffix='.png')
train_dataloader = dict(
    batch_size=2, num_workers=0, sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type='UDADataset',
        source=dict(**dataset, data_root=None, pipeline=source_pipeline,
                    data_prefix=dict(img_path='img_dir/train', seg_map_path='ann_dir/train')),
        target=dict(**dataset, data_root=None, pipeline=target_pipeline,
                    data_prefix=dict(img_path='img_dir/train', seg_map_path=''))))
val_dataloader = dict(
    batch_size=1, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(**dataset, data_root=None, pipeline=test_pipeline,
                 data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val')))
test_dataloader = val_dataloader
val_evaluator = dict(type='ClassIoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.0),
                     clip_grad=dict(max_norm=1.0))
param_scheduler = [dict(type='MultiStepLR', milestones=[2], gamma=0.5, by_epoch=False)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=3, val_interval=3)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1, max_keep_ckpts=5))
log_processor = dict(by_epoch=False, window_size=1)  # log each iteration's own values
custom_hooks = [dict(type='WeightsOnlyCheckpointHook'), dict(type='RNGStateHook'),
                dict(type='MergedParamGroupsSchedulerStateHook'),
                dict(type='UDAVisualizationHook', interval=2, tile_size=32)]
