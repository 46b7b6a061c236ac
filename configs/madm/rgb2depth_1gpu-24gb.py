# MADM rgb2depth on ONE GPU with 24 GB: the reference batch (2 pairs of 512x512 crops) in one
# process, with the memory levers of rgb2event_1gpu-24gb.py. Peak of the training step:
# 18.7 GiB ESTIMATED on the meta device (tools/benchmark.py --memory-estimate), not yet measured
# on a GPU. For 9 bf16/fp16 rgb2event variants measured on H100/H200 the estimate was 0.2-1.2
# GiB (at most 3 %) under the measured peak (docs/benchmarks.md); the reference settings need
# about 52 GiB.
# The mixed images' LPLR term, which depth has and events do not, adds 0.9 GiB to the estimate.
# Departures from rgb2depth.py (the reference), each a deliberate switch:
# - DAFormer fusion at 1/4 of the image (standard DAFormer) instead of at the full-resolution s0
#   size (method.md §11.14): the largest saving, and it changes the head's operating resolution;
# - bf16 autocast without loss scaling instead of fp16 + GradScaler;
# - UNet gradient checkpointing; VAE weights in bf16 (frozen, no grad); fused AdamW.
# Not a departure: the head resizes its embeddings by matmul (the same bilinear function),
# and AdamW keeps one parameter group per setting (the same updates in fewer launches).
_base_ = ['./rgb2depth.py']
model = dict(
    backbone=dict(gradient_checkpointing=True, vae_dtype='bfloat16'),
    decode_head=dict(fusion_stride=4, in_strides=[1, 8, 16, 32], resize_impl='matmul'))
optim_wrapper = dict(
    # one AdamW group per setting instead of one per parameter (fewer launches, same updates)
    constructor='MergedParamGroupsOptimWrapperConstructor',
    dtype='bfloat16',
    loss_scale=dict(_delete_=True, enabled=False),  # bf16 has fp32's range: nothing to rescale
    optimizer=dict(fused=True))
