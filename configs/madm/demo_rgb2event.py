# MADM demo, synthetic RGB -> synthetic events (11 classes) on a tiny SD that tools/demo.py
# pretrains without labels, CPU, a few minutes. Reference settings: configs/madm/rgb2event.py.
_base_ = [
    '../_base_/models/madm_tiny.py', '../_base_/datasets/demo_rgb2event.py',
    '../_base_/schedules/demo_cpu.py'  # includes default_runtime.py
]
num_classes = 11
# Task palette (method.md §8.3); it paints labels for LPLR and must match the dataset's.
palette = [[70, 130, 180], [70, 70, 70], [190, 153, 153], [220, 20, 60], [153, 153, 153],
           [128, 64, 128], [244, 35, 232], [107, 142, 35], [0, 0, 142], [102, 102, 156],
           [250, 170, 30]]
# The tiny SD architecture pretrained without labels on this demo's source and target train
# images by tools/demo.py's prior stage (madm/apis/tiny_sd_pretraining.py): the CPU stand-in
# for SD-1.4's pretrained weights. A random tiny VAE (the base's preset='tiny') is a fixed
# random projection that the frozen-VAE design cannot undo (docs/benchmarks.md).
backbone = dict(_delete_=True, type='StableDiffusionBackbone',
                pretrained='{{$MADM_DEMO_DATA:data/demo}}/event/tiny-sd',
                tap_layers=(5, 8, 11), noise='fixed', trainable='full')
model = dict(
    backbone=backbone,
    palette=palette,
    decode_head=dict(num_classes=num_classes),
    # Event reference: t0 = 50, decayed to 0 over 80% of the schedule (method.md §4).
    dplg=dict(start_timestep_range=(50, 51), end_iter=160),
    # Event reference: source-only LPLR, weight 20 (configs/madm/rgb2event.py). Weight 1 here:
    # with the pretrained tiny VAE's unit-scale latents, 20 made the LPLR term ~12 against a
    # cross-entropy of ~1 and MADM reached 7.5 mIoU instead of 11.9 (seed 0, docs/benchmarks.md).
    lplr=dict(source_weight=1.0, mixed_weight=0.0))
