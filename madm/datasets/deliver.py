"""DELIVER depth as an 11-class MADM target (method.md §8.1-§8.3)."""
from collections.abc import Sequence
from typing import Literal

from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

from .class_maps import CLASSES_11, get_label_mapping, task_metainfo
from .splits import DELIVER_CONDITIONS, deliver_split, to_data_list


@DATASETS.register_module()
class DELIVERDepthDataset(BaseSegDataset):
    """DELIVER depth images with labels decoded into the 11 depth classes.

    Folder tree (``*_11`` / ``depth_<enc>`` come from ``data_converters/deliver.py``)::

        data_root/
          depth/<cond>/<split>/<scene>/<frame>_depth_front.png       # also hha/, depth_<enc>/
          semantic/<cond>/<split>/<scene>/<frame>_semantic_front.png # class id + 1 in R
          semantic_11/...                                            # converted, 11 classes

    ``cond`` is one of cloud, fog, night, rain, sun; ``scene`` includes the
    corner-case folders (``..._motionblur`` etc.). Raw labels are decoded by the
    reference rule "R channel, minus 1, 0 -> 255, then 25 -> 11" (method.md §8.3),
    i.e. ``LoadLabelMap(channel='red')`` + ``MapLabels()`` with the per-sample
    ``label_mapping='deliver_raw_to_11'``.

    Test pipelines (method.md §8.4). Reference protocol, image and label squashed
    to 512x512 and scored there::

        [dict(type='LoadModalityImage'), dict(type='LoadLabelMap', channel='red'),
         dict(type='MapLabels'), dict(type='ReferenceEvalResize', scale=(512, 512)),
         dict(type='PackSegInputs')]

    Native protocol, the prediction is resized back to 1042x1042 and scored there::

        [dict(type='LoadModalityImage'),
         dict(type='Resize', scale=(512, 512), keep_ratio=False),
         dict(type='LoadLabelMap', channel='red'), dict(type='MapLabels'),
         dict(type='PackSegInputs')]

    Args:
        data_root (str): DELIVER root.
        split (str): ``'train'``, ``'val'`` or ``'test'``. Defaults to ``'test'``.
        conditions (Sequence[str]): Weather conditions to include. Reference: all
            five (method.md §8.1). Defaults to all five.
        modality_dir (str): ``'depth'`` (reference), ``'hha'`` or a converter
            output such as ``'depth_colormap'``. Defaults to ``'depth'``.
        label_dir (str): ``'semantic'`` (raw) or ``'semantic_11'`` (converted).
            Defaults to ``'semantic'``.
        label_mapping (str): Mapping applied by ``MapLabels``: ``'deliver_raw_to_11'``
            for raw labels, ``'identity_11'`` for converted ones. Defaults to
            ``'deliver_raw_to_11'``.
        with_labels (bool | None): Pair images with labels. Defaults to None:
            labels for val/test, none for the unlabeled train target.
        **kwargs: Forwarded to ``BaseSegDataset``.
    """
    METAINFO = CLASSES_11.metainfo()

    def __init__(self, data_root: str, split: Literal['train', 'val', 'test'] = 'test',
                 conditions: Sequence[Literal['cloud', 'fog', 'night', 'rain', 'sun']] =
                 DELIVER_CONDITIONS, modality_dir: str = 'depth', label_dir: str = 'semantic',
                 label_mapping: str = 'deliver_raw_to_11', with_labels: bool | None = None,
                 **kwargs) -> None:
        self.split = split
        self.conditions = tuple(conditions)
        self.modality_dir = modality_dir
        self.label_dir = label_dir
        get_label_mapping(label_mapping)  # fail on a typo before any file walk
        self.label_mapping = label_mapping
        self.with_labels = split != 'train' if with_labels is None else with_labels
        metainfo = task_metainfo('depth', kwargs.pop('metainfo', None), type(self).__name__)
        super().__init__(data_root=data_root, metainfo=metainfo, **kwargs)

    def load_data_list(self) -> list[dict]:
        """Return one item per depth image of the split and conditions."""
        entries = deliver_split(self.data_root, self.split, self.conditions, self.modality_dir,
                                self.label_dir if self.with_labels else None)
        return to_data_list(self.data_root, entries, self.label_mapping)
