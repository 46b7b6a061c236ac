# Ablation: MADM on RGB -> depth without LPLR (no latent palette-label regression).
_base_ = ['./rgb2depth.py']
model = dict(lplr=None)
