# Ablation: MADM on RGB -> infrared without DPLG (the teacher labels the clean target at t=0).
_base_ = ['./rgb2infrared.py']
model = dict(dplg=None)
