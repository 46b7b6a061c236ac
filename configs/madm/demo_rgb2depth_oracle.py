# Target-supervised oracle of the depth demo: the source-only model trained on the depth
# train split WITH its labels (what the adaptation should approach).
_base_ = ['./demo_rgb2depth_source-only.py']
train_dataloader = dict(
    dataset=dict(_delete_=True, type='DELIVERDepthDataset', data_root={{_base_.deliver_root}},
                 split='train', with_labels=True, pipeline={{_base_.oracle_pipeline}}))
