"""Cityscapes as MADM's labelled RGB source, in a task's class set (method.md §8.1, §8.3)."""
from typing import Literal

from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

from .class_maps import CITYSCAPES_TO_TASK, Task, task_metainfo
from .splits import cityscapes_split, to_data_list


@DATASETS.register_module()
class CityscapesTaskDataset(BaseSegDataset):
    """Cityscapes with its 19 trainIds merged into the 11 (depth, event) or 9
    (infrared) classes of a MADM task.

    Folder tree (``labelTrainIds`` come from ``data_converters/cityscapes.py``)::

        data_root/
          leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png
          gtFine/<split>/<city>/<stem>_gtFine_labelTrainIds.png
          sample_class_stats.json, samples_with_class.json   # rare-class sampling

    ``metainfo`` holds the *task's* classes and palette; labels stay trainIds on
    disk and are merged by :class:`~madm.datasets.transforms.MapLabels`, which
    reads the per-sample ``label_mapping`` (``'cityscapes_to_11'`` or
    ``'cityscapes_to_9'``). Never merge by overriding ``metainfo`` classes: mmseg
    would send terrain, rider, truck... to 255 (data-formats.md §0.4). Rare-class
    sampling works in 19-class space (method.md §8.1), so a sampler that inspects
    crops should run its pipeline before ``MapLabels`` or use
    :attr:`label_mapping` itself.

    Source pipeline (method.md §7, §12)::

        [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
         dict(type='MapLabels'),
         dict(type='Resize', scale=(1024, 512), keep_ratio=False),
         dict(type='RandomCrop', crop_size=(512, 512)),
         dict(type='RandomFlip', prob=0.5), dict(type='PackSegInputs')]

    Args:
        task (str): ``'depth'``, ``'infrared'`` or ``'event'``.
        data_root (str): Cityscapes root.
        split (str): ``'train'``, ``'val'`` or ``'test'``. Defaults to ``'train'``.
        **kwargs: Forwarded to ``BaseSegDataset`` (``pipeline``, ``test_mode``,
            ``metainfo`` repeating the task classes, ...).
    """
    # Per instance: the class set depends on ``task`` (see ``__init__``).
    METAINFO: dict = dict()

    def __init__(self, task: Task, data_root: str,
                 split: Literal['train', 'val', 'test'] = 'train', **kwargs) -> None:
        self.task = task
        self.split = split
        metainfo = task_metainfo(task, kwargs.pop('metainfo', None), type(self).__name__)
        self.label_mapping = CITYSCAPES_TO_TASK[task]
        super().__init__(data_root=data_root, metainfo=metainfo,
                         img_suffix='_leftImg8bit.png',
                         seg_map_suffix='_gtFine_labelTrainIds.png', **kwargs)

    def load_data_list(self) -> list[dict]:
        """Return one item per image of the split, with ``label_mapping`` set."""
        entries = cityscapes_split(self.data_root, self.split)
        return to_data_list(self.data_root, entries, self.label_mapping)
