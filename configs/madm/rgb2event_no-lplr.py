# Ablation: MADM on RGB -> event without LPLR (no latent palette-label regression).
_base_ = ['./rgb2event.py']
model = dict(lplr=None)
