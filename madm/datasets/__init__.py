from . import transforms  # noqa: F401
from .uda_dataset import UDADataset  # noqa: F401
from .cityscapes import CityscapesTaskDataset  # noqa: F401
from .deliver import DELIVERDepthDataset  # noqa: F401
from .dsec import DSECEventDataset  # noqa: F401
from .fmb import FMBInfraredDataset  # noqa: F401
