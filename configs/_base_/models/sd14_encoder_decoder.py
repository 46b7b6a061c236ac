# A plain (non-adaptive) segmentor on the same SD-1.4 backbone, neck and DAFormer head as
# MADM: for source-only and target-supervised (oracle) baselines.
sd_path = '{{$MADM_SD_PATH:checkpoints/stable-diffusion-v1-4}}'
num_classes = 11
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(
        type='SegDataPreProcessor', mean=[0.0, 0.0, 0.0], std=[255.0, 255.0, 255.0],
        bgr_to_rgb=True, pad_val=0, seg_pad_val=255, size_divisor=64),
    backbone=dict(type='StableDiffusionBackbone', pretrained=sd_path, tap_layers=(5, 8, 11),
                  noise='fixed', trainable='full'),
    neck=dict(type='BottleneckProjection', in_channels=[3, 320, 640, 1280],
              out_channels=[128, 512, 512, 512], bottleneck_channels=128,
              norm_cfg=dict(type='GN', num_groups=32)),
    decode_head=dict(
        type='DAFormerHead', in_channels=[128, 512, 512, 512], in_index=[0, 1, 2, 3],
        channels=256, embed_dims=256, num_classes=num_classes, dropout_ratio=0.1,
        norm_cfg=dict(type='BN', requires_grad=True), align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
