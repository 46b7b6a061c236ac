# Target-supervised oracle of the event demo: the source-only model trained on the event
# train split WITH its labels (what the adaptation should approach).
_base_ = ['./demo_rgb2event_source-only.py']
train_dataloader = dict(
    dataset=dict(_delete_=True, type='DSECEventDataset', data_root={{_base_.dsec_root}},
                 split='train', with_labels=True, label_dir='semantic/train',
                 pipeline={{_base_.oracle_pipeline}}))
