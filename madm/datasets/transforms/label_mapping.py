"""Look-up-table label remapping (merges raw classes into a task class set)."""
from collections.abc import Mapping

import numpy as np
from mmcv.transforms import BaseTransform
from mmseg.registry import TRANSFORMS

from ..class_maps import IGNORE_INDEX, build_label_lut, label_domain


@TRANSFORMS.register_module()
class MapLabels(BaseTransform):
    """Map raw label values to task class ids with a 256-entry look-up table.

    This *merges* classes (e.g. Cityscapes terrain -> vegetation for depth,
    method.md §8.3). Overriding a dataset's ``metainfo`` classes cannot do that:
    mmseg's by-name ``label_map`` sends every class missing from the new list to
    255 (data-formats.md §0.4).

    Required Keys:

    - gt_seg_map (np.uint8, ``(H, W)``)
    - label_mapping (only when ``mapping`` is None; the madm datasets set it)
    - seg_map_path (optional; named in errors)

    Modified Keys:

    - gt_seg_map

    Args:
        mapping (str | Mapping[int, int] | None): A name from
            :data:`madm.datasets.class_maps.LABEL_MAPPINGS` (e.g.
            ``'cityscapes_to_11'``), a ``{raw: class}`` dict, or None to use the
            sample's ``label_mapping`` (declared by the dataset). Defaults to None.
        check_range (bool): Raise when the label holds values outside the
            mapping's domain, instead of silently sending them to 255.
            Defaults to True.
        ignore_index (int): Ignore value. Defaults to 255.
    """

    def __init__(self, mapping: str | Mapping[int, int] | None = None,
                 check_range: bool = True, ignore_index: int = IGNORE_INDEX) -> None:
        self.mapping = mapping
        self.check_range = check_range
        self.ignore_index = ignore_index
        self._tables: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if mapping is not None:
            self._fixed = self._build(mapping)

    def _build(self, mapping: str | Mapping[int, int]) -> tuple[np.ndarray, np.ndarray]:
        return (build_label_lut(mapping, self.ignore_index),
                label_domain(mapping, self.ignore_index))

    def _tables_for(self, results: dict) -> tuple[np.ndarray, np.ndarray, str]:
        if self.mapping is not None:
            return (*self._fixed, str(self.mapping if isinstance(self.mapping, str)
                                      else 'custom mapping'))
        name = results.get('label_mapping')
        if name is None:
            raise KeyError('MapLabels(mapping=None) needs the sample key `label_mapping`, '
                           'which the madm datasets set; with another dataset pass '
                           "mapping=<name or dict>, e.g. mapping='cityscapes_to_11'.")
        if name not in self._tables:
            self._tables[name] = self._build(name)
        return (*self._tables[name], name)

    def transform(self, results: dict) -> dict:
        label = results['gt_seg_map']
        lut, domain, name = self._tables_for(results)
        if label.dtype != np.uint8:
            raise ValueError(f'MapLabels expects a uint8 label map, got {label.dtype} '
                             f'for {results.get("seg_map_path", "<unknown file>")!r}.')
        if self.check_range:
            present = np.bincount(label.ravel(), minlength=256) > 0
            bad = np.flatnonzero(present & ~domain).tolist()
            if bad:
                raise ValueError(
                    f'Label {results.get("seg_map_path", "<unknown file>")!r} holds values '
                    f'{bad} outside the domain of label mapping {name!r} '
                    f'(accepted: {np.flatnonzero(domain).tolist()}). The file belongs to '
                    'another label set or was already converted; pick the matching mapping '
                    "(converted labels use 'identity_11' / 'identity_9').")
        results['gt_seg_map'] = lut[label]
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(mapping={self.mapping!r}, '
                f'check_range={self.check_range})')
