from .prompt_time_conditioning import PromptTimeConditioning
from .sd_backbone import SDBackboneOutput, StableDiffusionBackbone, check_sd_folder
from .sd_presets import get_preset, save_preset_as_pretrained

__all__ = [
    'PromptTimeConditioning', 'SDBackboneOutput', 'StableDiffusionBackbone', 'check_sd_folder',
    'get_preset', 'save_preset_as_pretrained'
]
