# MADM on Stable Diffusion v1.4 (method.md §2-§7). The SD folder is `sd_path`
# (the MADM_SD_PATH environment variable, or --cfg-options model.backbone.pretrained=...;
# overriding `sd_path` itself has no effect, it is copied into the backbone when read).
sd_path = '{{$MADM_SD_PATH:checkpoints/stable-diffusion-v1-4}}'
num_classes = 11
palette = None  # set by the dataset base config (task palette, method.md §8.3)

data_preprocessor = dict(
    type='UDASegDataPreProcessor',
    mean=[0.0, 0.0, 0.0], std=[255.0, 255.0, 255.0],  # the reference feeds images in [0, 1]
    bgr_to_rgb=True, pad_val=0, seg_pad_val=255, size_divisor=64)
model = dict(
    type='MADM',
    data_preprocessor=data_preprocessor,
    palette=palette,
    backbone=dict(
        type='StableDiffusionBackbone',
        pretrained=sd_path,
        tap_layers=(5, 8, 11),          # up-path layers -> 1280/640/320 channels at strides 32/16/8
        noise='fixed',                  # the reference's seed-42 noise buffer
        trainable='full'),
    neck=dict(
        type='BottleneckProjection',
        in_channels=[3, 320, 640, 1280],   # s0 (VAE-decoded UNet output), taps 11, 8, 5
        out_channels=[128, 512, 512, 512],
        bottleneck_channels=128,
        norm_cfg=dict(type='GN', num_groups=32)),
    decode_head=dict(
        type='DAFormerHead',
        in_channels=[128, 512, 512, 512],
        in_index=[0, 1, 2, 3],
        channels=256,
        embed_dims=256,
        num_classes=num_classes,
        dropout_ratio=0.1,
        norm_cfg=dict(type='BN', requires_grad=True),
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    teacher_alpha=0.999,
    teacher_scope='head_neck_prompt',   # reference: the UNet is shared with the student
    teacher_mode='eval',                # deviation: the reference's teacher runs in train mode
    pseudo_threshold=0.968,
    pseudo_weight_mode='image',
    class_mix=dict(scope='batch', include_ignore=True),
    strong_aug=dict(jitter_prob=0.8, blur_prob=0.5),
    dplg=dict(start_timestep_range=(50, 51), end_iter=8000),
    lplr=dict(source_weight=20.0, mixed_weight=0.0,
              loss=dict(type='LatentRegressionLoss', loss_type='l1', normalize='all')),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
