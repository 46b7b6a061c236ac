# Event demo ablation: MADM without DPLG (clean-latent pseudo-labels, method.md §4).
_base_ = ['./demo_rgb2event.py']
model = dict(dplg=None)
