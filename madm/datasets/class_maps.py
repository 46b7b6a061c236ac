"""Task class sets, palettes and the label look-up tables of MADM (method.md §8.3).

A *task* is a target modality; each task has one class set that every dataset of
the task (the Cityscapes source included) is mapped into:

========  =========  ==========================================
task      classes    raw label sets mapped into it
========  =========  ==========================================
depth     11         Cityscapes trainIds (19), DELIVER (25 + 1)
event     11         Cityscapes trainIds (19), DSEC 11classes
infrared  9          Cityscapes trainIds (19), FMB (15)
========  =========  ==========================================

Mappings are plain ``{raw value: task class id}`` dicts; a raw value missing from a
mapping is *out of the domain* (an error when labels are checked), and 255 always
means ignore. :func:`build_label_lut` turns a mapping into the 256-entry uint8
table that :class:`~madm.datasets.transforms.MapLabels` and the converters apply.
Mappings are looked up by name (:data:`LABEL_MAPPINGS`) so configs stay plain data.
"""
from collections.abc import Mapping
from typing import Literal, NamedTuple

import numpy as np

Task = Literal['depth', 'infrared', 'event']
IGNORE_INDEX = 255


class ClassSet(NamedTuple):
    """Class names and palette of one label space.

    Attributes:
        classes (tuple[str, ...]): Class names, index = class id.
        palette (tuple[tuple[int, int, int], ...]): RGB colour of each class. MADM
            paints labels with it for the latent regression (LPLR, method.md §5.1),
            so it is data, not decoration.
    """
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]

    def metainfo(self) -> dict:
        """Return mmseg ``METAINFO``: ``dict(classes=tuple, palette=list[list[int]])``."""
        return dict(classes=self.classes, palette=[list(c) for c in self.palette])


# method.md §8.3 (depth and event share the set; DSEC's id 0 "background" is named sky).
CLASSES_11 = ClassSet(
    classes=('sky', 'building', 'fence', 'person', 'pole', 'road', 'sidewalk',
             'vegetation', 'car', 'wall', 'traffic sign'),
    palette=((70, 130, 180), (70, 70, 70), (190, 153, 153), (220, 20, 60),
             (153, 153, 153), (128, 64, 128), (244, 35, 232), (107, 142, 35),
             (0, 0, 142), (102, 102, 156), (250, 170, 30)))

# method.md §8.3, infrared ("car" is the paper's "Vehicle").
CLASSES_9 = ClassSet(
    classes=('sky', 'building', 'person', 'pole', 'road', 'sidewalk', 'vegetation',
             'car', 'traffic sign'),
    palette=((70, 130, 180), (70, 70, 70), (220, 20, 60), (153, 153, 153),
             (128, 64, 128), (244, 35, 232), (107, 142, 35), (0, 0, 142),
             (250, 170, 30)))

TASK_CLASSES: dict[str, ClassSet] = {
    'depth': CLASSES_11,
    'event': CLASSES_11,
    'infrared': CLASSES_9,
}

# Cityscapes: the standard labelIds -> trainIds table (cityscapesscripts' `labels.py`);
# every other id in 0..33 is void (255). labelIds PNGs store the license plate (-1) as 255.
CITYSCAPES_ID_TO_TRAINID: dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
    24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
CITYSCAPES_LABELID_MAPPING: dict[int, int] = {
    i: CITYSCAPES_ID_TO_TRAINID.get(i, IGNORE_INDEX) for i in range(34)}

# Cityscapes trainId (19) -> 11 classes; same for depth and event (method.md §8.3).
CITYSCAPES_TO_11: dict[int, int] = {
    0: 5, 1: 6, 2: 1, 3: 9, 4: 2, 5: 4, 6: 10, 7: 10, 8: 7, 9: 7, 10: 0, 11: 3,
    12: 3, 13: 8, 14: 8, 15: 8, 16: 8, 17: 8, 18: 8}
# Cityscapes trainId (19) -> 9 classes; wall and fence become ignore (method.md §8.3).
CITYSCAPES_TO_9: dict[int, int] = {
    0: 4, 1: 5, 2: 1, 3: 255, 4: 255, 5: 3, 6: 8, 7: 8, 8: 6, 9: 6, 10: 0, 11: 2,
    12: 2, 13: 7, 14: 7, 15: 7, 16: 7, 17: 7, 18: 7}

# DELIVER class ids *after* the "minus 1" shift (0 Building ... 24 Truck) -> 11 classes.
DELIVER_TO_11: dict[int, int] = {
    0: 1, 1: 2, 2: 255, 3: 3, 4: 4, 5: 5, 6: 5, 7: 6, 8: 7, 9: 8, 10: 9, 11: 10,
    12: 0, 13: 255, 14: 255, 15: 255, 16: 255, 17: 10, 18: 255, 19: 255, 20: 255,
    21: 7, 22: 8, 23: 8, 24: 8}
# DELIVER's raw PNG value v (red channel): 0 = unlabeled -> 255, v in 1..25 -> class v-1.
# Folding the shift into the table reproduces "channel 0, minus 1, 0 -> 255" (method.md §8.3).
DELIVER_RAW_TO_11: dict[int, int] = {0: 255, **{k + 1: v for k, v in DELIVER_TO_11.items()}}

# FMB label values 0..14 -> 9 classes; 0 (unlabeled) -> ignore (method.md §8.3).
FMB_TO_9: dict[int, int] = {
    0: 255, 1: 4, 2: 5, 3: 1, 4: 8, 5: 8, 6: 6, 7: 0, 8: 2, 9: 7, 10: 7, 11: 7,
    12: 7, 13: 7, 14: 3}

# Labels already in a task class set (DSEC 11classes, converter outputs): identity,
# kept as a mapping so that out-of-range values are still caught.
IDENTITY_11: dict[int, int] = {i: i for i in range(11)}
IDENTITY_9: dict[int, int] = {i: i for i in range(9)}

LABEL_MAPPINGS: dict[str, dict[int, int]] = {
    'cityscapes_labelid_to_trainid': CITYSCAPES_LABELID_MAPPING,
    'cityscapes_to_11': CITYSCAPES_TO_11,
    'cityscapes_to_9': CITYSCAPES_TO_9,
    'deliver_raw_to_11': DELIVER_RAW_TO_11,
    'fmb_to_9': FMB_TO_9,
    'identity_11': IDENTITY_11,
    'identity_9': IDENTITY_9,
}

# Name of the mapping that merges Cityscapes trainIds into each task's class set.
CITYSCAPES_TO_TASK: dict[str, str] = {
    'depth': 'cityscapes_to_11',
    'event': 'cityscapes_to_11',
    'infrared': 'cityscapes_to_9',
}


def get_label_mapping(mapping: str | Mapping[int, int]) -> dict[int, int]:
    """Resolve a mapping given by name (a key of :data:`LABEL_MAPPINGS`) or as a dict.

    Args:
        mapping (str | Mapping[int, int]): Name or ``{raw value: class id}``.

    Returns:
        dict[int, int]: The mapping with int keys and values.
    """
    if isinstance(mapping, str):
        if mapping not in LABEL_MAPPINGS:
            raise KeyError(f'Unknown label mapping {mapping!r}; choose one of '
                           f'{sorted(LABEL_MAPPINGS)} or pass a {{raw: class}} dict.')
        return dict(LABEL_MAPPINGS[mapping])
    out = {int(k): int(v) for k, v in mapping.items()}
    bad = {k: v for k, v in out.items() if not (0 <= k <= 255 and 0 <= v <= 255)}
    if bad:
        raise ValueError(f'Label mapping entries must lie in 0..255, got {bad}.')
    return out


def build_label_lut(mapping: str | Mapping[int, int],
                    ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Build the 256-entry look-up table of a label mapping.

    Args:
        mapping (str | Mapping[int, int]): Name in :data:`LABEL_MAPPINGS` or a dict.
        ignore_index (int): Value for raw values outside the mapping, and the value
            ``ignore_index`` itself maps to. Defaults to 255.

    Returns:
        np.ndarray: ``(256,)`` uint8; ``lut[raw]`` is the task class id.
    """
    lut = np.full(256, ignore_index, dtype=np.uint8)
    for raw, new in get_label_mapping(mapping).items():
        lut[raw] = new
    lut[ignore_index] = ignore_index
    return lut


def label_domain(mapping: str | Mapping[int, int],
                 ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Return which raw values a mapping accepts.

    Args:
        mapping (str | Mapping[int, int]): Name in :data:`LABEL_MAPPINGS` or a dict.
        ignore_index (int): Always accepted. Defaults to 255.

    Returns:
        np.ndarray: ``(256,)`` bool; True for the mapping's keys and ``ignore_index``.
    """
    domain = np.zeros(256, dtype=bool)
    domain[list(get_label_mapping(mapping))] = True
    domain[ignore_index] = True
    return domain


def out_of_domain_values(label: np.ndarray, mapping: str | Mapping[int, int],
                         ignore_index: int = IGNORE_INDEX) -> list[int]:
    """Return the sorted raw values of ``label`` that ``mapping`` does not accept.

    Args:
        label (np.ndarray): ``(H, W)`` uint8 raw label map.
        mapping (str | Mapping[int, int]): Name in :data:`LABEL_MAPPINGS` or a dict.
        ignore_index (int): Always accepted. Defaults to 255.

    Returns:
        list[int]: Empty when every value is in the domain.
    """
    present = np.bincount(label.ravel(), minlength=256) > 0
    return np.flatnonzero(present & ~label_domain(mapping, ignore_index)).tolist()


def task_metainfo(task: str, metainfo: dict | None = None, dataset: str = 'dataset') -> dict:
    """Return the task's ``METAINFO``, refusing a class list that would drop classes.

    mmseg turns a ``metainfo`` class list that differs from the dataset's own into a
    by-name ``label_map`` that sends every other class to 255 (data-formats.md §0.4).
    madm datasets merge classes with :class:`MapLabels` instead, so such an
    override is an error here rather than a silent loss of classes.

    Args:
        task (str): ``'depth'``, ``'infrared'`` or ``'event'``.
        metainfo (dict | None): User override; may repeat the task classes and
            set other keys. Defaults to None.
        dataset (str): Dataset name for the error message.

    Returns:
        dict: ``dict(classes=..., palette=...)`` updated with ``metainfo``.
    """
    if task not in TASK_CLASSES:
        raise ValueError(f'task must be one of {sorted(TASK_CLASSES)}, got {task!r}')
    info = TASK_CLASSES[task].metainfo()
    if metainfo is not None:
        classes = metainfo.get('classes')
        if classes is not None and tuple(classes) != info['classes']:
            raise ValueError(
                f'{dataset}: metainfo classes {tuple(classes)} differ from the {task} class set '
                f"{info['classes']}. Overriding classes would silently send merged classes to "
                '255; labels are merged by the MapLabels transform instead (method.md §8.3).')
        info.update(metainfo)
    return info
