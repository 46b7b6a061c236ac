"""Cityscapes preparation: ``labelTrainIds`` PNGs and rare-class-sampling statistics.

Two steps, both resumable:

1. For every ``gtFine/<split>/<city>/<stem>_gtFine_labelIds.png`` without a
   ``<stem>_gtFine_labelTrainIds.png`` beside it, write one with the standard
   Cityscapes id -> trainId table (:data:`~madm.datasets.class_maps.CITYSCAPES_ID_TO_TRAINID`;
   values 0..18, 255 = ignore).
2. Count the pixels of each trainId in every *train* label and write DAFormer's
   rare-class-sampling files into the Cityscapes root (method.md §7; skipped when
   both exist; delete them to recompute).

JSON schema (DAFormer's, data-formats.md §5; class ids are JSON *strings*):

``sample_class_stats.json``: a list with one object per train label, holding the
pixel count of every trainId present (n > 0, 255 not counted, keys in increasing
id order) and the label path relative to the Cityscapes root::

    [{"0": 1234, "2": 5678, ...,
      "file": "gtFine/train/aachen/aachen_000000_000019_gtFine_labelTrainIds.png"}, ...]

``samples_with_class.json``: for each trainId, the ``[file, n]`` pairs of the labels
that contain it, in the order of ``sample_class_stats.json``::

    {"0": [["gtFine/train/aachen/..._gtFine_labelTrainIds.png", 1234], ...], "2": [...], ...}

Consumers match files by basename, so the relative paths are enough; the
``min_pixels`` filter (3000) is applied by the sampler, not here.
"""
import json
import os
import os.path as osp
from collections.abc import Sequence

import numpy as np
from mmengine.logging import print_log
from mmengine.utils import ProgressBar

from madm.utils.atomic_io import atomic_write_image, atomic_write_json
from madm.utils.paths import MissingDataError, is_hidden, require_dir

from ..class_maps import build_label_lut, out_of_domain_values
from ..transforms.image_io import read_label_map
from . import ConversionError, ConversionJob, ConversionSummary, run_conversion

STATS_FILE = 'sample_class_stats.json'
SAMPLES_WITH_CLASS_FILE = 'samples_with_class.json'
NUM_TRAIN_IDS = 19
_TRAINID_MAPPING = {i: i for i in range(NUM_TRAIN_IDS)}
_HOW = ('Download gtFine_trainvaltest.zip from https://www.cityscapes-dataset.com and unpack '
        'it into the Cityscapes root (it holds gtFine/<split>/<city>/*_gtFine_labelIds.png).')


def _walk(directory: str, suffix: str) -> list[str]:
    """Sorted paths below ``directory`` (recursive) whose name ends with ``suffix``."""
    found = []
    for dirpath, dirnames, names in os.walk(directory):
        dirnames[:] = [d for d in dirnames if not is_hidden(d)]
        found.extend(osp.join(dirpath, n) for n in names
                     if n.endswith(suffix) and not is_hidden(n))
    return sorted(found)


def _read_checked(path: str, mapping: str | dict[int, int]) -> np.ndarray:
    label = read_label_map(path)
    bad = out_of_domain_values(label, mapping)
    if bad:
        raise ValueError(f'label values {bad} are not valid here (allowed: the keys of '
                         f'{mapping if isinstance(mapping, str) else "trainIds 0..18"} and 255); '
                         'the file is not a Cityscapes label of this kind.')
    return label


def convert_label_ids(root: str, splits: Sequence[str] | None = None,
                      show_progress: bool = True) -> ConversionSummary:
    """Write missing ``*_gtFine_labelTrainIds.png`` from ``*_gtFine_labelIds.png``.

    Args:
        root (str): Cityscapes root.
        splits (Sequence[str] | None): gtFine splits to convert. Defaults to every
            split folder present.
        show_progress (bool): Show a progress bar. Defaults to True.

    Returns:
        ConversionSummary: Counts (an existing ``labelTrainIds`` counts as skipped).
    """
    gt_root = require_dir(osp.join(root, 'gtFine'), 'Cityscapes gtFine folder', _HOW)
    splits = list(splits) if splits is not None else sorted(
        d for d in os.listdir(gt_root) if osp.isdir(osp.join(gt_root, d)))
    lut = build_label_lut('cityscapes_labelid_to_trainid')
    jobs = []
    for split in splits:
        split_dir = require_dir(osp.join(gt_root, split), f'Cityscapes gtFine/{split}', _HOW)
        for src in _walk(split_dir, '_gtFine_labelIds.png'):
            dst = src[:-len('_gtFine_labelIds.png')] + '_gtFine_labelTrainIds.png'
            jobs.append(ConversionJob(src, {dst: lambda a: lut[a]}))
    return run_conversion(
        jobs, lambda p: _read_checked(p, 'cityscapes_labelid_to_trainid'),
        atomic_write_image, 'cityscapes labelTrainIds', show_progress)


def compute_sample_class_stats(root: str, label_paths: Sequence[str],
                               show_progress: bool = False) -> list[dict]:
    """Count the pixels of each trainId in each label (DAFormer's RCS statistics).

    Args:
        root (str): Cityscapes root; the recorded ``file`` is relative to it.
        label_paths (Sequence[str]): ``labelTrainIds`` PNG paths.
        show_progress (bool): Show a progress bar. Defaults to False.

    Returns:
        list[dict]: One ``{"<trainId>": n, ..., "file": rel_path}`` per label, only
        trainIds with n > 0, in increasing id order (the module docstring's schema).
    """
    stats, failed = [], []
    bar = ProgressBar(len(label_paths)) if show_progress and label_paths else None
    for path in label_paths:
        try:
            label = _read_checked(path, _TRAINID_MAPPING)
        except (OSError, ValueError) as e:
            failed.append(f'{path}: {e}')
        else:
            counts = np.bincount(label.ravel(), minlength=256)[:NUM_TRAIN_IDS]
            entry: dict = {str(c): int(n) for c, n in enumerate(counts) if n > 0}
            entry['file'] = osp.relpath(path, root).replace(os.sep, '/')
            stats.append(entry)
        if bar is not None:
            bar.update()
    if failed:
        raise ConversionError(
            f'{len(failed)} Cityscapes label(s) could not be counted:\n  '
            + '\n  '.join(failed[:10])
            + '\nDelete the bad *_labelTrainIds.png files and re-create them with '
            '`python data_converters/cityscapes.py <root>`.')
    return stats


def samples_with_class(stats: Sequence[dict]) -> dict[str, list[list]]:
    """Invert per-image statistics into ``{"<trainId>": [[file, n], ...]}``.

    Args:
        stats (Sequence[dict]): Output of :func:`compute_sample_class_stats`.

    Returns:
        dict[str, list[list]]: Class id (string) -> ``[file, n]`` pairs, classes in
        order of first appearance, files in the order of ``stats``.
    """
    out: dict[str, list[list]] = {}
    for entry in stats:
        for cls, n in entry.items():
            if cls != 'file':
                out.setdefault(cls, []).append([entry['file'], n])
    return out


def load_class_stats(root: str) -> tuple[list[dict], dict[str, list[list]]]:
    """Load the rare-class-sampling files written by :func:`write_class_stats`.

    Args:
        root (str): Cityscapes root.

    Returns:
        tuple[list[dict], dict[str, list[list]]]: ``sample_class_stats`` and
        ``samples_with_class`` (schema in the module docstring).
    """
    paths = [osp.join(root, STATS_FILE), osp.join(root, SAMPLES_WITH_CLASS_FILE)]
    missing = [p for p in paths if not osp.isfile(p)]
    if missing:
        raise MissingDataError(f'Rare-class-sampling statistics missing: {missing}. Run '
                               f'`python data_converters/cityscapes.py {root}` to write them.')
    with open(paths[0], encoding='utf-8') as f:
        stats = json.load(f)
    with open(paths[1], encoding='utf-8') as f:
        with_class = json.load(f)
    return stats, with_class


def write_class_stats(root: str, show_progress: bool = True) -> ConversionSummary:
    """Write ``sample_class_stats.json`` and ``samples_with_class.json`` for the train split.

    Args:
        root (str): Cityscapes root (needs ``gtFine/train/*/*_labelTrainIds.png``).
        show_progress (bool): Show a progress bar. Defaults to True.

    Returns:
        ConversionSummary: 2 written, or 2 skipped when both files already exist.
    """
    outputs = [osp.join(root, STATS_FILE), osp.join(root, SAMPLES_WITH_CLASS_FILE)]
    if all(osp.isfile(p) for p in outputs):
        print_log(f'cityscapes class stats: both files exist in {root}, skipped',
                  logger='current')
        return ConversionSummary(skipped=2)
    train_dir = require_dir(osp.join(root, 'gtFine', 'train'), 'Cityscapes gtFine/train', _HOW)
    labels = _walk(train_dir, '_gtFine_labelTrainIds.png')
    if not labels:
        raise MissingDataError(f'No *_gtFine_labelTrainIds.png below {train_dir!r}; run '
                               f'`python data_converters/cityscapes.py {root}` (it writes them '
                               'from *_gtFine_labelIds.png first).')
    stats = compute_sample_class_stats(root, labels, show_progress)
    # samples_with_class is derived from stats; write it first so that a crash in
    # between leaves stats missing and the next run recomputes both.
    atomic_write_json(outputs[1], samples_with_class(stats))
    atomic_write_json(outputs[0], stats)
    summary = ConversionSummary(written=2)
    print_log(f'cityscapes class stats over {len(stats)} train labels: {summary}',
              logger='current')
    return summary


def convert_cityscapes(root: str, show_progress: bool = True) -> ConversionSummary:
    """Run both steps: labelTrainIds for every split, then the train statistics.

    Args:
        root (str): Cityscapes root.
        show_progress (bool): Show progress bars. Defaults to True.

    Returns:
        ConversionSummary: Summed counts of both steps.
    """
    require_dir(root, 'Cityscapes root', _HOW)
    labels = convert_label_ids(root, show_progress=show_progress)
    stats = write_class_stats(root, show_progress)
    return ConversionSummary(labels.written + stats.written, labels.skipped + stats.skipped,
                             labels.failed + stats.failed)
