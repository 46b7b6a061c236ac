"""FMB conversion: labels into the 9 infrared classes, and infrared encodings.

Input (the FMB release, data-formats.md §4)::

    <root>/<split>/Infrared/NNNNN.png     # 8-bit gray, 800x600
    <root>/<split>/Label/NNNNN.png        # 0 unlabeled, 1..14 classes

Output (below ``out_root``, default ``root``)::

    <split>/Label9/NNNNN.png              uint8 gray, 9 classes, 255 ignore (method.md §8.3)
    <split>/Infrared_<enc>/NNNNN.png      RGB PNG per encoding ('replicate' reference, 'clahe')

Read them with ``FMBInfraredDataset(label_dir='Label9', label_mapping='identity_9',
img_dir='Infrared_<enc>')``.
"""
import os.path as osp
from collections.abc import Sequence
from typing import Literal

from madm.utils.atomic_io import atomic_write_image
from madm.utils.paths import MissingDataError, list_files, require_dir

from ..class_maps import build_label_lut, out_of_domain_values
from ..transforms.image_io import encode_modality, read_image_array, read_label_map
from . import ConversionJob, ConversionSummary, run_conversion

InfraredEncoding = Literal['replicate', 'clahe']
FMB_SPLITS = ('train', 'test')
_HOW = ('Download FMB (https://github.com/JinyuanLiu-CV/SegMiF) and unpack it so that '
        '<root>/<split>/Infrared/ and <root>/<split>/Label/ exist.')


def _decode_label(path: str):
    label = read_label_map(path)
    bad = out_of_domain_values(label, 'fmb_to_9')
    if bad:
        raise ValueError(f'label values {bad} are outside FMB\'s 0..14 (+255); the file is not '
                         'an FMB label (or is already converted).')
    return label


def convert_fmb(root: str, out_root: str | None = None, splits: Sequence[str] = FMB_SPLITS,
                encodings: Sequence[InfraredEncoding] = (), labels: bool = True,
                clahe_clip_limit: float = 2.0,
                show_progress: bool = True) -> ConversionSummary:
    """Convert FMB labels (and optionally infrared encodings); resumable.

    Args:
        root (str): FMB root.
        out_root (str | None): Output root. Defaults to ``root``.
        splits (Sequence[str]): Splits to convert; each must exist. Defaults to
            ``('train', 'test')``.
        encodings (Sequence[str]): Infrared encodings to write. Defaults to none.
        labels (bool): Write ``<split>/Label9/``. Defaults to True.
        clahe_clip_limit (float): CLAHE clip limit for ``'clahe'``. Defaults to 2.0.
        show_progress (bool): Show a progress bar. Defaults to True.

    Returns:
        ConversionSummary: Counts; raises
        :class:`~madm.datasets.conversion.ConversionError` naming every bad input.
    """
    require_dir(root, 'FMB root', _HOW)
    out_root = out_root or root
    bad_enc = [e for e in encodings if e not in ('replicate', 'clahe')]
    if bad_enc:
        raise ValueError(f"Unknown infrared encodings {bad_enc}; choose 'replicate' or 'clahe'.")
    label_jobs, image_jobs = [], []
    lut = build_label_lut('fmb_to_9')
    for split in splits:
        if labels:
            label_dir = require_dir(osp.join(root, split, 'Label'), f'FMB {split}/Label', _HOW)
            label_jobs += [ConversionJob(osp.join(label_dir, n),
                                         {osp.join(out_root, split, 'Label9', n): lambda a: lut[a]})
                           for n in list_files(label_dir, '.png')]
        if encodings:
            ir_dir = require_dir(osp.join(root, split, 'Infrared'), f'FMB {split}/Infrared', _HOW)
            image_jobs += [ConversionJob(
                osp.join(ir_dir, n),
                {osp.join(out_root, split, f'Infrared_{enc}', n):
                 (lambda a, enc=enc, n=n: encode_modality(a, enc, clahe_clip_limit, path=n))
                 for enc in encodings}) for n in list_files(ir_dir, '.png')]
    if (labels and not label_jobs) or (encodings and not image_jobs):
        raise MissingDataError(f'No FMB PNGs found below {root!r} for splits {list(splits)}. '
                               + _HOW)
    out = ConversionSummary()
    for jobs, read, name in ((label_jobs, _decode_label, 'fmb labels'),
                             (image_jobs, read_image_array, 'fmb infrared encodings')):
        if jobs:
            s = run_conversion(jobs, read, atomic_write_image, name, show_progress)
            out.written += s.written
            out.skipped += s.skipped
    return out
