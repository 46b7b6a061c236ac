# Baseline: the same SD backbone, neck and head trained on labelled Cityscapes RGB only,
# evaluated on the depth target (no adaptation). Same schedule as MADM.
_base_ = [
    '../_base_/default_runtime.py', '../_base_/models/sd14_encoder_decoder.py',
    '../_base_/datasets/uda_cityscapes_deliver_depth.py', '../_base_/schedules/madm_10k.py'
]
num_classes = 11
model = dict(decode_head=dict(num_classes=num_classes))
train_dataloader = dict(
    dataset=dict(_delete_=True, type='CityscapesTaskDataset', task={{_base_.task}},
                 data_root={{_base_.cityscapes_root}}, split='train',
                 pipeline={{_base_.source_pipeline}}))
