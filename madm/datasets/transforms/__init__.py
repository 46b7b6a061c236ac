"""Pipeline transforms for target modalities and label merging (registered in TRANSFORMS)."""
from .label_mapping import MapLabels
from .loading import LoadLabelMap, LoadModalityImage
from .resize import ReferenceEvalResize

__all__ = ['LoadLabelMap', 'LoadModalityImage', 'MapLabels', 'ReferenceEvalResize']
