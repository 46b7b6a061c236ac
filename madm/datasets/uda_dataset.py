"""Paired source/target dataset with DAFormer rare-class sampling (method.md §1 step 2, §7)."""
import json
import os.path as osp
from collections.abc import Mapping

import numpy as np
import torch
from mmengine.dataset import BaseDataset
from mmengine.dist import get_rank
from mmengine.logging import print_log
from mmseg.registry import DATASETS
from torch.utils.data import get_worker_info

from ..utils.paths import require_files
from .class_maps import IGNORE_INDEX, get_label_mapping

RCS_STATS_FILES = ('sample_class_stats.json', 'samples_with_class.json')
_RCS_HOW_TO_GET = ('Run `python data_converters/cityscapes.py <cityscapes root>`, which writes '
                   'them into the Cityscapes root, or point rare_class_sampling.stats_dir at the '
                   'folder that holds them.')


def rcs_class_probabilities(sample_class_stats: list[dict], temperature: float) -> dict[int, float]:
    """Return the rare-class sampling distribution ``softmax((1 − f_c) / T)``.

    ``f_c`` is class ``c``'s share of all counted pixels in DAFormer's
    ``sample_class_stats.json`` (method.md §7, RCS row). Only classes that
    occur in the stats get a probability.

    Args:
        sample_class_stats (list[dict]): One dict per image: ``{"<class>": n,
            ..., "file": path}`` (class keys are strings after JSON).
        temperature (float): ``T``; 0.01 in MADM.

    Returns:
        dict[int, float]: Class id → probability, ordered by ascending
        frequency (rarest first, as DAFormer sorts them).
    """
    counts: dict[int, int] = {}
    for entry in sample_class_stats:
        for key, num in entry.items():
            if key == 'file':
                continue
            counts[int(key)] = counts.get(int(key), 0) + int(num)
    if not counts:
        raise ValueError('sample_class_stats.json holds no class counts; regenerate it. ' + _RCS_HOW_TO_GET)
    classes = sorted(counts, key=lambda c: (counts[c], c))
    freq = torch.tensor([counts[c] for c in classes], dtype=torch.float64)
    freq = freq / freq.sum()
    probs = torch.softmax((1 - freq) / temperature, dim=0)
    return dict(zip(classes, probs.tolist()))


def _as_lists(value: object) -> object:
    """Compare tuples and lists alike (palettes come as either from configs)."""
    if isinstance(value, (list, tuple)):
        return [_as_lists(v) for v in value]
    return value


@DATASETS.register_module()
class UDADataset:
    """A labelled source and an unlabelled target dataset, served in pairs.

    Item ``i`` is ``dict(source=<source sample>, target=<target sample>)``; each
    sample is what the branch's own pipeline (ending in ``PackSegInputs``)
    yields, ``dict(inputs=Tensor, data_samples=SegDataSample)``. With
    mmengine's ``pseudo_collate`` a batch becomes
    ``dict(source=dict(inputs=[...], data_samples=[...]), target=dict(...))``,
    which :class:`~madm.models.data_preprocessors.UDASegDataPreProcessor`
    consumes.

    Pairing: the target sample is ``target[i mod N_tgt]``. The source sample is
    drawn at random: by rare-class sampling (RCS) when enabled, else uniformly.
    The length is N_tgt unless ``length`` is given, so that one cycle of a
    shuffling sampler draws every target image once. The reference's virtual
    length is N_src·N_tgt with target ``i mod N_tgt`` (method.md §7, "data
    loader"): the same distributions, but a permutation of 12 M indices for DSEC
    in the sampler (as Python ints, about 0.4 GB per cycle).

    Rare-class sampling (DAFormer, MADM ``cross_modality_dataset.py:87-109,
    242-318``, method.md §7): draw a class ``c`` from
    ``softmax((1 − f_c)/T)`` over the classes in ``sample_class_stats.json``,
    then uniformly one source image with more than ``min_pixels`` pixels of
    ``c`` (``samples_with_class.json``, matched to the source's
    ``seg_map_path`` by basename), then re-run the source pipeline up to
    ``max_retries`` times until the crop holds more than ``min_crop_pixels``
    pixels of ``c`` (strictly more, as the reference; the last try is kept).
    The draws come from a numpy ``Generator`` owned by each process and data
    loader worker, seeded from ``(torch.initial_seed(), rank, worker id)``:
    mmengine's ``randomness.seed`` makes it reproducible and each worker gets its
    own stream. With that seed set, mmengine seeds a worker the same way each time
    it is created, so a worker re-created for a new epoch (a ``DefaultSampler``
    without persistent workers) repeats its draws; the configs use an infinite
    sampler with persistent workers, which create each worker once. The source
    pipeline's own augmentations (crop, flip) keep using mmseg's RNGs.

    The statistics count Cityscapes trainIds, while the packed ``gt_sem_seg``
    usually holds task ids (the source pipeline runs ``MapLabels``). Set
    ``class_map`` to the same mapping (e.g. ``'cityscapes_to_11'``); the crop
    is then checked for ``class_map[c]``. The reference checks the crop
    before its label conversion, so this check is slightly more lenient:
    merged classes count together (a terrain crop also counts vegetation
    pixels), and a class mapped to ignore (wall/fence for infrared) is checked
    as "any ignored pixel".

    Args:
        source (dict | BaseDataset): Labelled source dataset or its config.
        target (dict | BaseDataset): Unlabelled target dataset or its config.
        rare_class_sampling (dict | None): ``None`` disables RCS. Otherwise a
            dict with keys ``class_temp`` (0.01), ``min_pixels`` (3000),
            ``min_crop_pixels`` (1500), ``max_retries`` (10), ``stats_dir``
            (None = the source's ``data_root``), ``class_map`` (None = the
            packed labels use the statistics' ids; a mapping name from
            :data:`madm.datasets.class_maps.LABEL_MAPPINGS` or a
            ``{stats id: label id}`` dict). Defaults to None.
        length (int | None): Virtual length. Defaults to None (N_tgt).
        ignore_index (int): Ignore label. Defaults to 255.
    """

    def __init__(self,
                 source: dict | BaseDataset,
                 target: dict | BaseDataset,
                 rare_class_sampling: dict | None = None,
                 length: int | None = None,
                 ignore_index: int = IGNORE_INDEX) -> None:
        self.source = DATASETS.build(source) if isinstance(source, dict) else source
        self.target = DATASETS.build(target) if isinstance(target, dict) else target
        self._check_metainfo()
        if length is not None and length < 1:
            raise ValueError(f'length must be a positive number of items, got {length}.')
        self.length = length
        self.ignore_index = ignore_index
        self._rng: np.random.Generator | None = None
        self._rng_owner: tuple[int, int, int] | None = None
        self.rcs_enabled = rare_class_sampling is not None
        if self.rcs_enabled:
            self._init_rcs(**rare_class_sampling)

    # ------------------------------------------------------------------ metainfo
    def _check_metainfo(self) -> None:
        src, tgt = self.source.metainfo, self.target.metainfo
        for key in ('classes', 'palette'):
            src_val, tgt_val = src.get(key), tgt.get(key)
            if not tgt_val:  # an unlabelled target may declare no classes at all
                continue
            if _as_lists(src_val) != _as_lists(tgt_val):
                raise ValueError(f'UDADataset: source and target {key} disagree: source {src_val}, '
                                 f'target {tgt_val}. Give both datasets the task class set '
                                 '(madm.datasets.class_maps.TASK_CLASSES) and map the source labels '
                                 'with MapLabels instead of overriding metainfo.')

    @property
    def metainfo(self) -> dict:
        """dict: The source's metainfo (classes and palette of the task)."""
        return self.source.metainfo

    # ------------------------------------------------------------------ RCS set-up
    def _init_rcs(self,
                  class_temp: float = 0.01,
                  min_pixels: int = 3000,
                  min_crop_pixels: int = 1500,
                  max_retries: int = 10,
                  stats_dir: str | None = None,
                  class_map: str | Mapping[int, int] | None = None) -> None:
        stats_dir = stats_dir or getattr(self.source, 'data_root', None)
        require_files(stats_dir, RCS_STATS_FILES, 'Rare-class sampling statistics', _RCS_HOW_TO_GET)
        with open(osp.join(stats_dir, 'sample_class_stats.json')) as f:
            sample_class_stats = json.load(f)
        with open(osp.join(stats_dir, 'samples_with_class.json')) as f:
            samples_with_class = {int(k): v for k, v in json.load(f).items()}

        probs = rcs_class_probabilities(sample_class_stats, class_temp)
        self.source.full_init()
        file_to_idx = {
            osp.basename(self.source.get_data_info(i)['seg_map_path']): i
            for i in range(len(self.source))
        }
        self.rcs_class_indices: dict[int, list[int]] = {}
        unmatched = 0
        for cls in probs:
            indices = []
            for file, num in samples_with_class.get(cls, []):
                if num <= min_pixels:
                    continue
                idx = file_to_idx.get(osp.basename(file))
                if idx is None:
                    unmatched += 1
                else:
                    indices.append(idx)
            if not indices:
                raise ValueError(f'Rare-class sampling: class {cls} has no source image with more '
                                 f'than min_pixels={min_pixels} pixels among the dataset files '
                                 f'(stats in {stats_dir!r}). Check that the statistics belong to '
                                 'this source split, or lower min_pixels.')
            self.rcs_class_indices[cls] = indices
        if unmatched:
            print_log(f'Rare-class sampling: {unmatched} (file, class) entries of {stats_dir!r} match '
                      'no file of the source dataset and are skipped.', logger='current')
        self.rcs_classes = np.array(list(probs))
        self.rcs_probs = np.array(list(probs.values()))
        self.rcs_probs = self.rcs_probs / self.rcs_probs.sum()
        self.rcs_min_crop_pixels = min_crop_pixels
        self.rcs_max_retries = max_retries
        self.rcs_label_of = get_label_mapping(class_map) if class_map is not None else None

    # ------------------------------------------------------------------ sampling
    def _generator(self) -> np.random.Generator:
        """This process/worker's source generator, (re)created when torch is re-seeded."""
        info = get_worker_info()
        # In a worker, torch.initial_seed() is mmengine's worker seed (seed + num_workers *
        # rank + worker id, the same for every iterator) when randomness.seed is set, else
        # torch's per-worker, per-iterator seed.
        owner = (torch.initial_seed(), get_rank(), info.id + 1 if info is not None else 0)
        if self._rng is None or self._rng_owner != owner:
            self._rng = np.random.default_rng(list(owner))
            self._rng_owner = owner
        return self._rng

    def _crop_label_id(self, cls: int) -> int:
        if self.rcs_label_of is None:
            return cls
        return self.rcs_label_of.get(cls, self.ignore_index)

    def rare_class_sample(self) -> dict:
        """Draw a source sample by rare-class sampling (see the class docstring).

        Returns:
            dict: The packed source sample; the chosen class (a statistics id)
            is recorded in its ``data_samples.metainfo['rcs_class']``.
        """
        rng = self._generator()
        cls = int(rng.choice(self.rcs_classes, p=self.rcs_probs))
        indices = self.rcs_class_indices[cls]
        idx = indices[int(rng.integers(len(indices)))]
        label_id = self._crop_label_id(cls)
        sample = self.source[idx]
        for _ in range(self.rcs_max_retries):
            num = int((sample['data_samples'].gt_sem_seg.data == label_id).sum())
            if num > self.rcs_min_crop_pixels:
                break
            sample = self.source[idx]
        sample['data_samples'].set_metainfo(dict(rcs_class=cls))
        return sample

    def __getitem__(self, idx: int) -> dict:
        """Return ``dict(source=<packed sample>, target=<packed sample>)`` for item ``idx``."""
        if self.rcs_enabled:
            src = self.rare_class_sample()
        else:
            src = self.source[int(self._generator().integers(len(self.source)))]
        tgt = self.target[idx % len(self.target)]
        return dict(source=src, target=tgt)

    def __len__(self) -> int:
        return self.length if self.length is not None else len(self.target)
