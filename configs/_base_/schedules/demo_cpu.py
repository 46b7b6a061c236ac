# CPU demo schedule (tools/demo.py): 200 iterations of batch 2 on a randomly initialised tiny
# model. Departures from madm_10k.py (method.md §7), and why:
# - lr 1e-3, not 5e-6: the reference lr fine-tunes a pretrained SD UNet; a random tiny
#   network learns nothing in 200 steps at 5e-6.
# - plain fp32 OptimWrapper: no AMP on CPU.
# - grad-norm clip 1.0, not 0.01: 0.01 would cap every step of a network trained from scratch.
# - poly decay after a short warm-up, not the 10k-step multi-step schedule.
# It builds on default_runtime.py so that it can override the runtime's hooks and seed.
_base_ = ['../default_runtime.py']
max_iters = 200
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
    clip_grad=dict(max_norm=1.0, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, end_factor=1.0, begin=0, end=20, by_epoch=False),
    dict(type='PolyLR', power=1.0, eta_min=1e-5, begin=20, end=max_iters, by_epoch=False),
]
# No validation during training: tools/demo.py runs tools/test.py once at the end.
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_begin=max_iters + 1,
                 val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    logger=dict(interval=20),  # every 20 iterations, with mmengine's ETA
    checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
randomness = dict(seed=0)  # tools/benchmark_synthetic.py overrides it per seed
