"""Gather the metrics of several runs into one comparison table (``tools/benchmark_table.py``).

A run is a work dir or a metrics file. Its metrics are taken from, in this order:

1. a file given directly: a ``tools/test.py --out`` JSON, or a JSON-lines log
   (``scalars.json`` / ``<timestamp>.json``), whose last record with ``mIoU`` is used;
2. in a work dir, the newest ``*.json`` at its top level written by ``tools/test.py --out``
   (a dict with ``classes`` and ``metrics``);
3. otherwise the newest ``<timestamp>/`` run folder that holds a metric record, read from
   ``vis_data/scalars.json``, ``vis_data/<timestamp>.json`` or ``<timestamp>.json``
   (training runs write the first two, ``tools/test.py`` the last); its last record with
   ``mIoU`` is used, i.e. the last validation of a training run.

The table has one row per run and the columns of
:func:`madm.evaluation.format_markdown_table`: per-class IoU, then mIoU, mAcc, aAcc.
"""
import csv
import io
import json
import os
import os.path as osp
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from madm.evaluation import format_markdown_table, results_row
from madm.evaluation.results_table import SUMMARY_KEYS
from madm.utils import MissingDataError, atomic_write_text

_TIMESTAMP_DIR = re.compile(r'^\d{8}_\d{6}$')


@dataclass
class RunMetrics:
    """The metrics of one run.

    Attributes:
        metrics (dict[str, float]): ``ClassIoUMetric`` keys: ``IoU.<class>``,
            ``mIoU``, ``mAcc``, ``aAcc``, ...
        classes (list[str]): Class names in the metric's order.
        source (str): The file they were read from.
    """

    metrics: dict[str, float]
    classes: list[str]
    source: str


def _classes_from_keys(metrics: Mapping[str, float]) -> list[str]:
    return [k[len('IoU.'):] for k in metrics if k.startswith('IoU.')]


def _read_results_json(path: str) -> RunMetrics | None:
    """A ``tools/test.py --out`` JSON, or None if ``path`` holds something else."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or 'metrics' not in data or 'classes' not in data:
        return None
    return RunMetrics({k: float(v) for k, v in data['metrics'].items()},
                      list(data['classes']), path)


def _read_last_metric_record(path: str) -> RunMetrics | None:
    """The last JSON-lines record with ``mIoU`` in a log, or None if there is none."""
    last = None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and 'mIoU' in record:
                last = record
    if last is None:
        return None
    metrics = {k: float(v) for k, v in last.items()
               if isinstance(v, (int, float)) and k not in ('step', 'iter', 'epoch')}
    return RunMetrics(metrics, _classes_from_keys(metrics), path)


def _read_run_folder(folder: str) -> RunMetrics | None:
    stamp = osp.basename(folder)
    for rel in (osp.join('vis_data', 'scalars.json'), osp.join('vis_data', f'{stamp}.json'),
                f'{stamp}.json'):
        path = osp.join(folder, rel)
        if osp.isfile(path):
            found = _read_last_metric_record(path)
            if found is not None:
                return found
    return None


def load_run_metrics(path: str) -> RunMetrics:
    """Read the metrics of one run (see the module docstring for the search order).

    Args:
        path (str): A work dir, a ``tools/test.py --out`` JSON, or a JSON-lines log.

    Returns:
        RunMetrics: The metrics, class names and the file they came from.

    Raises:
        MissingDataError: If ``path`` does not exist or holds no metrics.
    """
    if osp.isfile(path):
        found = _read_results_json(path) or _read_last_metric_record(path)
        if found is None:
            raise MissingDataError(f'{path!r} holds no metrics: expected the JSON written by '
                                   'tools/test.py --out, or a scalars.json with an mIoU record.')
        return found
    if not osp.isdir(path):
        raise MissingDataError(f'Run not found: {path!r} is neither a work dir nor a file.')

    results = sorted((osp.join(path, f) for f in os.listdir(path) if f.endswith('.json')),
                     key=osp.getmtime, reverse=True)
    for candidate in results:
        found = _read_results_json(candidate)
        if found is not None:
            return found
    runs = sorted((d for d in os.listdir(path)
                   if _TIMESTAMP_DIR.match(d) and osp.isdir(osp.join(path, d))), reverse=True)
    for run in runs:
        found = _read_run_folder(osp.join(path, run))
        if found is not None:
            return found
    raise MissingDataError(
        f'No metrics in work dir {path!r}: no tools/test.py --out JSON at its top level and no '
        '<timestamp>/vis_data/scalars.json (or <timestamp>.json) with an mIoU record. Run '
        'tools/test.py CONFIG CKPT --out <work_dir>/results.json first.')


def gather_runs(paths: Sequence[str], names: Sequence[str] | None = None
                ) -> tuple[dict[str, RunMetrics], list[str]]:
    """Load several runs and the union of their classes.

    Args:
        paths (Sequence[str]): Work dirs or metrics files.
        names (Sequence[str] | None): Row names, one per path. Defaults to each
            path's base name (the work dir's name).

    Returns:
        tuple[dict[str, RunMetrics], list[str]]: ``{row name: metrics}`` in the given
        order, and the class names in first-seen order.
    """
    if names is not None and len(names) != len(paths):
        raise ValueError(f'Got {len(names)} names for {len(paths)} runs; give one name per run.')
    if names is None:
        names = [osp.basename(osp.normpath(p)) for p in paths]
    if len(set(names)) != len(names):
        raise ValueError(f'Row names must be unique, got {list(names)}; pass --names.')
    runs = {name: load_run_metrics(path) for name, path in zip(names, paths)}
    classes: list[str] = []
    for run in runs.values():
        classes.extend(c for c in run.classes if c not in classes)
    return runs, classes


def benchmark_markdown(runs: Mapping[str, RunMetrics], classes: Sequence[str]) -> str:
    """One markdown table, a row per run (missing values are ``-``)."""
    return format_markdown_table({name: run.metrics for name, run in runs.items()}, classes)


def benchmark_csv(runs: Mapping[str, RunMetrics], classes: Sequence[str]) -> str:
    """The same table as CSV (missing values are empty cells), 2 decimals."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator='\n')
    writer.writerow(['method', *classes, *SUMMARY_KEYS])
    for name, run in runs.items():
        row = results_row(run.metrics, classes)
        writer.writerow([name] + ['' if v != v else f'{v:.2f}' for v in row.values()])
    return buf.getvalue()


def write_benchmark_table(runs: Mapping[str, RunMetrics], classes: Sequence[str],
                          path: str) -> None:
    """Write the table as markdown (``.md``) or CSV (``.csv``), atomically."""
    ext = osp.splitext(path)[1].lower()
    if ext == '.md':
        atomic_write_text(path, benchmark_markdown(runs, classes) + '\n')
    elif ext == '.csv':
        atomic_write_text(path, benchmark_csv(runs, classes))
    else:
        raise ValueError(f'--out must end with .md or .csv, got {path!r}')
