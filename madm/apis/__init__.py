"""User-facing helpers behind ``tools/infer.py`` and ``tools/benchmark_table.py``.

Not imported by ``import madm``: the tools import ``madm.apis`` themselves.
"""
from .benchmark_table import (RunMetrics, benchmark_csv, benchmark_markdown, gather_runs,
                              load_run_metrics, write_benchmark_table)
from .inference import (SegmentorInferencer, colorize_mask, inference_pipeline, load_segmentor,
                        overlay_mask, run_inference)

__all__ = [
    'RunMetrics', 'benchmark_csv', 'benchmark_markdown', 'gather_runs', 'load_run_metrics',
    'write_benchmark_table', 'SegmentorInferencer', 'colorize_mask', 'inference_pipeline',
    'load_segmentor', 'overlay_mask', 'run_inference'
]
