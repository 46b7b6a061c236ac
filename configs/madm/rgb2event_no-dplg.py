# Ablation: MADM on RGB -> event without DPLG (the teacher labels the clean target at t=0).
_base_ = ['./rgb2event.py']
model = dict(dplg=None)
