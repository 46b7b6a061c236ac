from collections import OrderedDict

import numpy as np
from mmseg.evaluation import IoUMetric
from mmseg.registry import METRICS


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
    """

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
