"""tools/benchmark_table.py on hand-written work dirs, in a fresh interpreter."""
import json
import os

import pytest

from _helpers import run_tool

pytestmark = pytest.mark.slow


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(text)


def test_benchmark_table_cli(tmp_path):
    # A work dir with the JSON of tools/test.py --out ...
    _write(str(tmp_path / 'madm' / 'results.json'), json.dumps({
        'classes': ['sky', 'car'], 'IoU': {'sky': 61.0, 'car': 72.5}, 'mIoU': 66.75,
        'mAcc': 75.0, 'aAcc': 90.25,
        'metrics': {'aAcc': 90.25, 'mIoU': 66.75, 'mAcc': 75.0, 'IoU.sky': 61.0,
                    'IoU.car': 72.5}}))
    # ... and one with only a training log: its last validation counts.
    records = [{'loss': 1.0, 'step': 1},
               {'aAcc': 80.0, 'mIoU': 40.0, 'mAcc': 50.0, 'IoU.sky': 30.0, 'IoU.car': 50.0,
                'step': 1000},
               {'aAcc': 81.0, 'mIoU': 42.5, 'mAcc': 51.0, 'IoU.sky': 35.0, 'IoU.car': 50.0,
                'step': 2000}]
    _write(str(tmp_path / 'base' / '20240101_000000' / 'vis_data' / 'scalars.json'),
           ''.join(json.dumps(r) + '\n' for r in records))

    out = str(tmp_path / 'table.csv')
    proc = run_tool(['tools/benchmark_table.py', str(tmp_path / 'madm'), str(tmp_path / 'base'),
                     '--names', 'MADM', 'Source only', '--out', out])
    table = [line for line in proc.stdout.splitlines() if line.startswith('|')]
    assert table == ['| method | sky | car | mIoU | mAcc | aAcc |',
                     '|---|---|---|---|---|---|',
                     '| MADM | 61.00 | 72.50 | 66.75 | 75.00 | 90.25 |',
                     '| Source only | 35.00 | 50.00 | 42.50 | 51.00 | 81.00 |']
    with open(out) as f:
        assert f.read().splitlines() == ['method,sky,car,mIoU,mAcc,aAcc',
                                         'MADM,61.00,72.50,66.75,75.00,90.25',
                                         'Source only,35.00,50.00,42.50,51.00,81.00']
