# MADM, Cityscapes RGB -> DSEC events (11 classes), reference settings (method.md §4-§8).
_base_ = [
    '../_base_/default_runtime.py', '../_base_/models/madm_sd14.py',
    '../_base_/datasets/uda_cityscapes_dsec_event.py', '../_base_/schedules/madm_10k.py'
]
num_classes = 11
# Task palette (method.md §8.3); it paints labels for LPLR and must match the dataset's.
palette = [[70, 130, 180], [70, 70, 70], [190, 153, 153], [220, 20, 60], [153, 153, 153],
           [128, 64, 128], [244, 35, 232], [107, 142, 35], [0, 0, 142], [102, 102, 156],
           [250, 170, 30]]
model = dict(
    palette=palette,
    decode_head=dict(num_classes=num_classes),
    dplg=dict(start_timestep_range=(50, 51), end_iter=8000),
    # Event: source-only LPLR with weight 20 (the released config; the paper's ablation
    # reportedly prefers 10, method.md §11.7).
    lplr=dict(source_weight=20.0, mixed_weight=0.0))
