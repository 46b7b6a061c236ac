"""DELIVER conversion: labels into the 11 depth classes, and depth encodings.

Input (the DELIVER release, data-formats.md §3.1)::

    <root>/depth/<cond>/<split>/<scene>/<frame>_depth_front.png
    <root>/semantic/<cond>/<split>/<scene>/<frame>_semantic_front.png   # class id + 1 in R

Output (below ``out_root``, default ``root``; same sub-paths and file names)::

    semantic_11/...  uint8 gray, 11 depth classes, 255 ignore (method.md §8.3)
    depth_<enc>/...  RGB PNG for each requested encoding ('replicate' is the
                     reference gray x3; 'inverse_depth'; 'colormap')

Read them with ``DELIVERDepthDataset(label_dir='semantic_11',
label_mapping='identity_11', modality_dir='depth_<enc>')``.
"""
import os.path as osp
from collections.abc import Sequence
from typing import Literal

from madm.utils.atomic_io import atomic_write_image
from madm.utils.paths import MissingDataError, list_dirs, list_files, require_dir

from ..class_maps import build_label_lut, out_of_domain_values
from ..splits import DELIVER_CONDITIONS
from ..transforms.image_io import encode_modality, read_image_array, read_label_map
from . import ConversionJob, ConversionSummary, run_conversion

DepthEncoding = Literal['replicate', 'inverse_depth', 'colormap']
DELIVER_SPLITS = ('train', 'val', 'test')
_HOW = ('Download DELIVER (https://github.com/jamycheung/DELIVER) and unpack it so that '
        '<root>/depth/ and <root>/semantic/ hold <cond>/<split>/<scene>/ folders.')


def _files(root: str, kind: str, suffix: str, conditions: Sequence[str],
           splits: Sequence[str]) -> list[str]:
    """Relative paths ``<cond>/<split>/<scene>/<name>`` below ``root/kind``."""
    rels = []
    for cond in conditions:
        for split in splits:
            split_dir = osp.join(root, kind, cond, split)
            if not osp.isdir(split_dir):
                continue
            for scene in list_dirs(split_dir):
                rels.extend(f'{cond}/{split}/{scene}/{n}'
                            for n in list_files(osp.join(split_dir, scene), suffix))
    return rels


def _decode_label(path: str):
    label = read_label_map(path, channel='red')
    bad = out_of_domain_values(label, 'deliver_raw_to_11')
    if bad:
        raise ValueError(f'raw label values {bad} are outside DELIVER\'s 0..25 (+255); the file '
                         'is not a DELIVER semantic PNG (class id + 1 in the red channel).')
    return label


def convert_deliver(root: str, out_root: str | None = None,
                    splits: Sequence[str] = DELIVER_SPLITS,
                    conditions: Sequence[str] = DELIVER_CONDITIONS,
                    encodings: Sequence[DepthEncoding] = (), labels: bool = True,
                    show_progress: bool = True) -> ConversionSummary:
    """Convert DELIVER labels (and optionally depth encodings); resumable.

    Args:
        root (str): DELIVER root.
        out_root (str | None): Output root. Defaults to ``root``.
        splits (Sequence[str]): Splits to convert; missing split folders are
            skipped, but at least one file must be found. Defaults to all three.
        conditions (Sequence[str]): Weather conditions. Defaults to all five.
        encodings (Sequence[str]): Depth encodings to write into ``depth_<enc>/``.
            Defaults to none.
        labels (bool): Write ``semantic_11/``. Defaults to True.
        show_progress (bool): Show a progress bar. Defaults to True.

    Returns:
        ConversionSummary: Counts of written / skipped outputs; raises
        :class:`~madm.datasets.conversion.ConversionError` naming every bad input.
    """
    require_dir(root, 'DELIVER root', _HOW)
    out_root = out_root or root
    bad_enc = [e for e in encodings if e not in ('replicate', 'inverse_depth', 'colormap')]
    if bad_enc:
        raise ValueError(f"Unknown depth encodings {bad_enc}; choose from 'replicate', "
                         "'inverse_depth', 'colormap'.")
    label_summary, image_summary = ConversionSummary(), ConversionSummary()
    if labels:
        require_dir(osp.join(root, 'semantic'), 'DELIVER semantic/ folder', _HOW)
        lut = build_label_lut('deliver_raw_to_11')
        rels = _files(root, 'semantic', '_semantic_front.png', conditions, splits)
        if not rels:
            raise MissingDataError(f'No *_semantic_front.png below {osp.join(root, "semantic")!r} '
                                   f'for splits {list(splits)} and conditions {list(conditions)}. '
                                   + _HOW)
        jobs = [ConversionJob(osp.join(root, 'semantic', r),
                              {osp.join(out_root, 'semantic_11', r): lambda a: lut[a]})
                for r in rels]
        label_summary = run_conversion(jobs, _decode_label, atomic_write_image,
                                       'deliver labels', show_progress)
    if encodings:
        require_dir(osp.join(root, 'depth'), 'DELIVER depth/ folder', _HOW)
        rels = _files(root, 'depth', '_depth_front.png', conditions, splits)
        if not rels:
            raise MissingDataError(f'No *_depth_front.png below {osp.join(root, "depth")!r}. '
                                   + _HOW)
        jobs = [ConversionJob(
            osp.join(root, 'depth', r),
            {osp.join(out_root, f'depth_{enc}', r):
             (lambda a, enc=enc, r=r: encode_modality(a, enc, path=r)) for enc in encodings})
            for r in rels]
        image_summary = run_conversion(jobs, read_image_array, atomic_write_image,
                                       'deliver depth encodings', show_progress)
    return ConversionSummary(label_summary.written + image_summary.written,
                             label_summary.skipped + image_summary.skipped)
