"""Pure UDA functions of MADM: tensors in, tensors out, randomness via explicit generators."""
from .class_mix import class_mix_mask, class_mix_masks, class_mix_masks_on_device, mix
from .dplg import dplg_timestep, sample_start_timestep
from .ema import ema_update_, teacher_alpha
from .palette import paint_labels
from .photometric import (blur_kernel_size, color_jitter, gaussian_blur,
                          strong_augment)
from .pseudo_label import class_balanced_selection, confident_share, pseudo_label_and_weight

__all__ = [
    'class_mix_mask', 'class_mix_masks', 'class_mix_masks_on_device', 'mix', 'dplg_timestep',
    'sample_start_timestep',
    'ema_update_', 'teacher_alpha', 'paint_labels', 'blur_kernel_size', 'color_jitter',
    'gaussian_blur', 'strong_augment', 'class_balanced_selection', 'confident_share',
    'pseudo_label_and_weight'
]
