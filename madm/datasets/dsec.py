"""DSEC-Semantic event frames as an 11-class MADM target (method.md §8.1-§8.3)."""
from collections.abc import Sequence
from typing import Literal

from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

from .class_maps import CLASSES_11, get_label_mapping, task_metainfo
from .splits import dsec_split, to_data_list


@DATASETS.register_module()
class DSECEventDataset(BaseSegDataset):
    """DSEC event frames (8-bit "edge form" PNGs, 640x440) with 11-class labels.

    Folder tree (MADM's download, or the dsec_events converter's output)::

        data_root/
          69mask_train_edges/<seq>/<i:06d>.png      # train frames (even i >= 2 used)
          69mask_test_edges/<seq>/<i:06d>.png       # test frames (i >= 1 used)
          test_semantic_labels/<seq>/11classes/<i:06d>.png

    Labels are DSEC-Semantic's 11 classes used as is (method.md §8.3); the
    ``'identity_11'`` mapping only checks their range. Frames rendered at
    640x480 need ``LoadModalityImage(max_height=440)`` (data-formats.md §1.7).

    Test pipelines (method.md §8.4). Reference protocol::

        [dict(type='LoadModalityImage', max_height=440), dict(type='LoadLabelMap'),
         dict(type='MapLabels'), dict(type='ReferenceEvalResize', scale=(512, 512)),
         dict(type='PackSegInputs')]

    Native protocol: ``Resize(scale=(512, 512), keep_ratio=False)`` right after
    ``LoadModalityImage`` and no ``ReferenceEvalResize``.

    Args:
        data_root (str): DSEC root.
        split (str): ``'train'`` or ``'test'``. Defaults to ``'test'``.
        frames_dir (str | None): Frame folder. Defaults to ``69mask_<split>_edges``.
        label_dir (str): Label folder. Defaults to ``'test_semantic_labels'``.
        sequences (Sequence[str] | None): Restrict to these sequences. Defaults
            to all sequence folders.
        label_mapping (str): Defaults to ``'identity_11'``.
        with_labels (bool | None): Pair frames with labels. Defaults to None:
            labels for test, none for train.
        **kwargs: Forwarded to ``BaseSegDataset``.
    """
    METAINFO = CLASSES_11.metainfo()

    def __init__(self, data_root: str, split: Literal['train', 'test'] = 'test',
                 frames_dir: str | None = None, label_dir: str = 'test_semantic_labels',
                 sequences: Sequence[str] | None = None, label_mapping: str = 'identity_11',
                 with_labels: bool | None = None, **kwargs) -> None:
        self.split = split
        self.frames_dir = frames_dir
        self.label_dir = label_dir
        self.sequences = tuple(sequences) if sequences is not None else None
        get_label_mapping(label_mapping)
        self.label_mapping = label_mapping
        self.with_labels = split != 'train' if with_labels is None else with_labels
        metainfo = task_metainfo('event', kwargs.pop('metainfo', None), type(self).__name__)
        super().__init__(data_root=data_root, metainfo=metainfo, **kwargs)

    def load_data_list(self) -> list[dict]:
        """Return one item per frame kept by MADM's frame rule."""
        entries = dsec_split(self.data_root, self.split, self.frames_dir,
                             self.label_dir if self.with_labels else None,
                             sequences=self.sequences)
        return to_data_list(self.data_root, entries, self.label_mapping)
