# Ablation: MADM on RGB -> depth without DPLG (the teacher labels the clean target at t=0).
_base_ = ['./rgb2depth.py']
model = dict(dplg=None)
