# Ablation: MADM on RGB -> infrared without LPLR (no latent palette-label regression).
_base_ = ['./rgb2infrared.py']
model = dict(lplr=None)
