"""FMB infrared as a 9-class MADM target (method.md §8.1-§8.3)."""
from typing import Literal

from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

from .class_maps import CLASSES_9, get_label_mapping, task_metainfo
from .splits import fmb_split, to_data_list


@DATASETS.register_module()
class FMBInfraredDataset(BaseSegDataset):
    """FMB thermal images (800x600, 8-bit gray) with labels merged 15 -> 9.

    Folder tree (``Label9`` / ``Infrared_<enc>`` come from ``data_converters/fmb.py``)::

        data_root/
          <split>/Infrared/NNNNN.png     # also Visible/, Infrared_<enc>/
          <split>/Label/NNNNN.png        # values 0..14, 0 = unlabeled
          <split>/Label9/NNNNN.png       # converted, 9 classes

    A flattened ``Infrared/``, ``Label/`` + ``<split>.txt`` layout is accepted too.
    ``MapLabels()`` applies the per-sample ``label_mapping='fmb_to_9'``.

    Test pipelines (method.md §8.4). Reference protocol::

        [dict(type='LoadModalityImage'), dict(type='LoadLabelMap'), dict(type='MapLabels'),
         dict(type='ReferenceEvalResize', scale=(512, 512)), dict(type='PackSegInputs')]

    Native protocol: ``Resize(scale=(512, 512), keep_ratio=False)`` right after
    ``LoadModalityImage`` and no ``ReferenceEvalResize``.

    Args:
        data_root (str): FMB root.
        split (str): ``'train'`` or ``'test'``. Defaults to ``'test'``.
        img_dir (str): ``'Infrared'`` (reference) or a converter output such as
            ``'Infrared_clahe'``. Defaults to ``'Infrared'``.
        label_dir (str): ``'Label'`` (raw) or ``'Label9'`` (converted).
            Defaults to ``'Label'``.
        label_mapping (str): ``'fmb_to_9'`` for raw labels, ``'identity_9'`` for
            converted ones. Defaults to ``'fmb_to_9'``.
        with_labels (bool | None): Pair images with labels. Defaults to None:
            labels for test, none for train.
        **kwargs: Forwarded to ``BaseSegDataset``.
    """
    METAINFO = CLASSES_9.metainfo()

    def __init__(self, data_root: str, split: Literal['train', 'test'] = 'test',
                 img_dir: str = 'Infrared', label_dir: str = 'Label',
                 label_mapping: str = 'fmb_to_9', with_labels: bool | None = None,
                 **kwargs) -> None:
        self.split = split
        self.img_dir = img_dir
        self.label_dir = label_dir
        get_label_mapping(label_mapping)
        self.label_mapping = label_mapping
        self.with_labels = split != 'train' if with_labels is None else with_labels
        metainfo = task_metainfo('infrared', kwargs.pop('metainfo', None), type(self).__name__)
        super().__init__(data_root=data_root, metainfo=metainfo, **kwargs)

    def load_data_list(self) -> list[dict]:
        """Return one item per infrared image of the split."""
        entries = fmb_split(self.data_root, self.split, self.img_dir,
                            self.label_dir if self.with_labels else None)
        return to_data_list(self.data_root, entries, self.label_mapping)
