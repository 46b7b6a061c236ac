"""User-facing helpers behind ``tools/infer.py``, ``tools/benchmark_table.py`` and the demo's prior.

Not imported by ``import madm``: the tools import ``madm.apis`` themselves.
"""
from .benchmark_table import (RunMetrics, benchmark_csv, benchmark_markdown, gather_runs,
                              load_run_metrics, write_benchmark_table)
from .inference import (SegmentorInferencer, colorize_mask, inference_pipeline, load_segmentor,
                        overlay_mask, run_inference)
from .tiny_sd_pretraining import PriorSchedule, pretrain_tiny_sd

__all__ = [
    'RunMetrics', 'benchmark_csv', 'benchmark_markdown', 'gather_runs', 'load_run_metrics',
    'write_benchmark_table', 'SegmentorInferencer', 'colorize_mask', 'inference_pipeline',
    'load_segmentor', 'overlay_mask', 'run_inference', 'PriorSchedule', 'pretrain_tiny_sd'
]
