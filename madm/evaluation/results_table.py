"""Benchmark tables in the paper's form: per-class IoU, then mIoU, mAcc and aAcc."""
import csv
import io
import json
import math
import os.path as osp
from collections.abc import Mapping, Sequence

from madm.utils.atomic_io import atomic_write_json, atomic_write_text

SUMMARY_KEYS = ('mIoU', 'mAcc', 'aAcc')


def results_row(metrics: Mapping[str, float], class_names: Sequence[str]) -> dict[str, float]:
    """Pick the table's columns out of a metrics dict (``ClassIoUMetric`` keys).

    Returns:
        dict: ``{class name: IoU, ..., 'mIoU': ..., 'mAcc': ..., 'aAcc': ...}``;
        a value missing from ``metrics`` is NaN.
    """
    row = {cls: float(metrics.get(f'IoU.{cls}', math.nan)) for cls in class_names}
    row.update({key: float(metrics.get(key, math.nan)) for key in SUMMARY_KEYS})
    return row


def format_markdown_table(metrics: Mapping[str, float] | Mapping[str, Mapping[str, float]],
                          class_names: Sequence[str], row_name: str = 'result') -> str:
    """Format one result (a metrics dict) or several (``{row name: metrics}``) as markdown."""
    if metrics and all(isinstance(v, Mapping) for v in metrics.values()):
        rows = {name: results_row(m, class_names) for name, m in metrics.items()}
    else:
        rows = {row_name: results_row(metrics, class_names)}
    header = ['method', *class_names, *SUMMARY_KEYS]
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for name, row in rows.items():
        cells = [name] + ['-' if math.isnan(v) else f'{v:.2f}' for v in row.values()]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def write_results_table(metrics: Mapping[str, float], class_names: Sequence[str],
                        path: str) -> None:
    """Write one result as JSON (``.json``) or a one-row CSV (``.csv``), atomically."""
    row = results_row(metrics, class_names)
    ext = osp.splitext(path)[1].lower()
    if ext == '.json':
        atomic_write_json(path, {'classes': list(class_names),
                                 'IoU': {c: row[c] for c in class_names},
                                 **{k: row[k] for k in SUMMARY_KEYS},
                                 'metrics': {k: float(v) for k, v in metrics.items()}})
    elif ext == '.csv':
        lines: list[list[str]] = [list(row), [f'{v:.2f}' for v in row.values()]]
        buf = io.StringIO()
        csv.writer(buf).writerows(lines)
        atomic_write_text(path, buf.getvalue())
    else:
        raise ValueError(f'--out must end with .json or .csv, got {path!r}')
