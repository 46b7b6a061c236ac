import os.path as osp
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
from mmseg.evaluation import IoUMetric
from mmseg.registry import METRICS

from madm.utils.atomic_io import atomic_write_image

from ..image_names import relative_image_name


@METRICS.register_module()
class ClassIoUMetric(IoUMetric):
    """mmseg's ``IoUMetric`` that also returns every per-class value.

    ``IoUMetric`` only logs its per-class table; this subclass returns it too, as
    ``IoU.<class>`` and ``Acc.<class>`` (percent, 2 decimals) next to ``aAcc``,
    ``mIoU`` and ``mAcc``, so ``tools/test.py`` can print and save the paper-style
    table. The summary numbers are computed exactly as ``IoUMetric`` computes them:
    the confusion areas are summed over the whole test set, and the mean skips
    classes that occur neither in the labels nor in the predictions (the same rule
    as the reference evaluator, method.md §9.1).

    With ``output_dir``, each prediction is saved as a PNG of class indices at
    ``output_dir/<image path below data_root>.png`` (mirroring the dataset's folder
    tree), at the resolution it was scored at. ``IoUMetric`` names the file after
    the image's basename only, so DSEC's ``<seq>/<i:06d>.png`` frames overwrote
    each other. Without ``data_root`` the basename is used, and a second image of
    the same name in the same process raises ValueError instead of overwriting the
    first (images scored by other processes are not checked).

    Args:
        data_root (str | None): The test dataset's ``data_root``, to name saved
            predictions. Defaults to None.
        **kwargs: Forwarded to ``IoUMetric`` (``iou_metrics``, ``output_dir``, ...).
    """

    def __init__(self, data_root: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.data_root = data_root
        self._saved_names: set[str] = set()

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Score a batch like ``IoUMetric``; save its predictions under unique names."""
        num_classes = len(self.dataset_meta['classes'])
        for sample in data_samples:
            pred = sample['pred_sem_seg']['data'].squeeze()
            if not self.format_only:
                label = sample['gt_sem_seg']['data'].squeeze().to(pred)
                self.results.append(
                    self.intersect_and_union(pred, label, num_classes, self.ignore_index))
            if self.output_dir is not None:
                self._save_prediction(pred.cpu().numpy(), sample)

    def _save_prediction(self, mask: np.ndarray, sample: dict) -> None:
        name = relative_image_name(sample['img_path'], self.data_root)
        if name in self._saved_names:
            raise ValueError(f'two test images would both be saved as {name}.png in '
                             f'{self.output_dir}; set the metric\'s data_root to the dataset\'s '
                             'data_root to name predictions by their path below it')
        self._saved_names.add(name)
        if sample.get('reduce_zero_label', False):
            mask = mask + 1  # back to the dataset's label ids, as IoUMetric saves them
        atomic_write_image(osp.join(self.output_dir, f'{name}.png'), mask.astype(np.uint8))

    def evaluate(self, size: int) -> dict:
        # Every evaluation run (each validation round) writes the same names again; every
        # rank clears its own record here, whereas compute_metrics runs on rank 0 only.
        self._saved_names.clear()
        return super().evaluate(size)

    def compute_metrics(self, results: list) -> dict[str, float]:
        metrics = super().compute_metrics(results)
        if self.format_only:
            return metrics
        intersect, union, pred_area, label_area = (sum(r) for r in zip(*results))
        per_class = self.total_area_to_metrics(intersect, union, pred_area, label_area,
                                               self.metrics, self.nan_to_num, self.beta)
        out = OrderedDict(metrics)
        for name in ('IoU', 'Acc'):
            if name not in per_class:
                continue
            values = np.asarray(per_class[name], dtype=np.float64)
            for cls, value in zip(self.dataset_meta['classes'], values):
                out[f'{name}.{cls}'] = float(np.round(value * 100, 2))
        return out
