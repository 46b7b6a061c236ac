"""Benchmark tables in the paper's form: per-class IoU, then mIoU, mAcc and aAcc."""
import csv
import io
import json
import math
import os.path as osp
from collections.abc import Mapping, Sequence

from madm.utils.atomic_io import atomic_write_json, atomic_write_text

SUMMARY_KEYS = ('mIoU', 'mAcc', 'aAcc')
RESULTS_TABLE_EXTENSIONS = ('.json', '.csv')


def check_results_table_path(path: str) -> str:
    """Return ``path`` if :func:`write_results_table` can write it, else raise ValueError.

    ``tools/test.py`` calls it while parsing ``--out``, so that a wrong extension
    fails before the test set runs, not after.
    """
    if osp.splitext(path)[1].lower() not in RESULTS_TABLE_EXTENSIONS:
        raise ValueError(f'a results table must end with .json or .csv, got {path!r}')
    return path


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
    check_results_table_path(path)
    row = results_row(metrics, class_names)
    ext = osp.splitext(path)[1].lower()
    if ext == '.json':
        atomic_write_json(path, {'classes': list(class_names),
                                 'IoU': {c: row[c] for c in class_names},
                                 **{k: row[k] for k in SUMMARY_KEYS},
                                 'metrics': {k: float(v) for k, v in metrics.items()}})
    else:  # '.csv'
        lines: list[list[str]] = [list(row), [f'{v:.2f}' for v in row.values()]]
        buf = io.StringIO()
        csv.writer(buf).writerows(lines)
        atomic_write_text(path, buf.getvalue())
