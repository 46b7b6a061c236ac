# Event demo ablation: MADM without LPLR (no latent palette regression, method.md §5).
_base_ = ['./demo_rgb2event.py']
model = dict(lplr=None)
