# Source-only baseline of the infrared demo: the tiny backbone, neck and head as a plain
# EncoderDecoder trained on the labelled synthetic RGB only, scored on the infrared target.
_base_ = ['./demo_rgb2infrared.py']
model = dict(
    _delete_=True,
    type='EncoderDecoder',
    data_preprocessor=dict(type='SegDataPreProcessor', mean=[0.0, 0.0, 0.0],
                           std=[255.0, 255.0, 255.0], bgr_to_rgb=True, pad_val=0,
                           seg_pad_val=255, size_divisor=64, test_cfg=dict(size_divisor=64)),
    backbone={{_base_.backbone}},
    neck={{_base_.neck}},
    decode_head={{_base_.decode_head}},
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
train_dataloader = dict(
    dataset=dict(_delete_=True, type='CityscapesTaskDataset', task={{_base_.task}},
                 data_root={{_base_.cityscapes_root}}, split='train',
                 pipeline={{_base_.source_pipeline}}))
