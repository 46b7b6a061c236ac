# MADM optimisation (method.md §7): AdamW 5e-6, wd 0.05 except norm layers and biases,
# global grad-norm clip 0.01, fp16 AMP, 10k iterations, checkpoint + eval every 1k.
optim_wrapper = dict(
    type='AmpOptimWrapper',
    dtype='float16',  # reference: torch.cuda.amp fp16 + GradScaler
    loss_scale='dynamic',
    optimizer=dict(type='AdamW', lr=5e-6, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
    clip_grad=dict(max_norm=0.01, norm_type=2))
# The reference's detectron2 schedule counts 19,999 updates over 10k iterations
# (method.md §7): warm-up from 0.067x over the first 27 iterations, x0.1 from 8889, x0.01 from 9630.
param_scheduler = [
    dict(type='LinearLR', start_factor=0.067, end_factor=1.0, begin=0, end=27, by_epoch=False),
    dict(type='MultiStepLR', milestones=[8889, 9630], gamma=0.1, begin=0, end=10000,
         by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=10000, val_interval=1000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# Checkpoints and evaluation every 1000 iterations, keeping 1 (default_runtime.py).
