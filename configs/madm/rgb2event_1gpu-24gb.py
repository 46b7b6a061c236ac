# MADM rgb2event on ONE GPU with 24 GB: the reference batch (2 pairs of 512x512 crops) in one
# process, with the memory levers measured in docs/benchmarks.md ("GPU: sd14 rgb2event"):
# 18.55 GiB peak measured on an H100 (random-weight SD-1.4, tools/benchmark.py; the training
# step only, not yet a whole run on a 24 GB card), against 52 GiB without them.
# Departures from rgb2event.py (the reference), each a deliberate switch:
# - DAFormer fusion at 1/4 of the image (standard DAFormer) instead of at the full-resolution s0
#   size (method.md §11.14): the largest saving, and it changes the head's operating resolution;
# - bf16 autocast without loss scaling instead of fp16 + GradScaler (loss terms within 4.4e-3 of
#   fp32);
# - UNet gradient checkpointing; VAE weights in bf16 (frozen, no grad); fused AdamW.
# Not a departure: the head resizes its embeddings by matmul (the same bilinear function, a
# cheaper backward on GPUs; docs/benchmarks.md, fifth session). Added after the 18.55 GiB above
# was measured; it only removes saved activations (-8.7 GiB at the reference fusion).
# Not a departure either: AdamW's parameters in one group per setting (2 instead of 769; the
# same updates, fewer kernel launches and less host time; docs/benchmarks.md, fourteenth
# session). The optimizer state keeps mmengine's per-parameter layout in checkpoints, so it
# loads whichever of the two constructors wrote it.
_base_ = ['./rgb2event.py']
model = dict(
    backbone=dict(gradient_checkpointing=True, vae_dtype='bfloat16'),
    decode_head=dict(fusion_stride=4, in_strides=[1, 8, 16, 32], resize_impl='matmul'))
optim_wrapper = dict(
    # one AdamW group per setting instead of one per parameter (fewer launches, same updates)
    constructor='MergedParamGroupsOptimWrapperConstructor',
    dtype='bfloat16',
    loss_scale=dict(_delete_=True, enabled=False),  # bf16 has fp32's range: nothing to rescale
    optimizer=dict(fused=True))
