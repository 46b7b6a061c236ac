# Target-supervised oracle of the infrared demo: the source-only model trained on the infrared
# train split WITH its labels (what the adaptation should approach).
_base_ = ['./demo_rgb2infrared_source-only.py']
train_dataloader = dict(
    dataset=dict(_delete_=True, type='FMBInfraredDataset', data_root={{_base_.fmb_root}},
                 split='train', with_labels=True, pipeline={{_base_.oracle_pipeline}}))
