"""madm.apis.benchmark_table on hand-written work dirs in the layouts mmengine writes."""
import json
import os
import os.path as osp

import pytest

from madm.apis.benchmark_table import (benchmark_csv, benchmark_markdown, gather_runs,
                                       load_run_metrics, write_benchmark_table)
from madm.utils import MissingDataError


def _results_json(path, classes, ious, miou, macc, aacc):
    """The file tools/test.py --out writes (madm.evaluation.write_results_table)."""
    metrics = {'aAcc': aacc, 'mIoU': miou, 'mAcc': macc,
               **{f'IoU.{c}': v for c, v in zip(classes, ious)}}
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        json.dump({'classes': classes, 'IoU': dict(zip(classes, ious)), 'mIoU': miou,
                   'mAcc': macc, 'aAcc': aacc, 'metrics': metrics}, f)


def _jsonl(path, records):
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(''.join(json.dumps(r) + '\n' for r in records))


TRAIN_LINE = {'lr': 5e-6, 'loss': 1.2, 'iter': 1000, 'step': 1000}


def _val(miou, road, sky, step):
    return {'aAcc': 90.0, 'mIoU': miou, 'mAcc': 60.0, 'IoU.sky': sky, 'IoU.road': road,
            'Acc.sky': 1.0, 'data_time': 0.1, 'time': 0.2, 'step': step}


@pytest.fixture
def work_dirs(tmp_path):
    # A: a tools/test.py --out JSON wins over the training log.
    a = tmp_path / 'madm_event'
    _results_json(str(a / 'results.json'), ['sky', 'road'], [50.0, 80.0], 65.0, 70.0, 91.5)
    _jsonl(str(a / '20240101_000000' / 'vis_data' / 'scalars.json'), [_val(1.0, 1.0, 1.0, 1)])
    # B: the newest run has no validation yet; the last validation of the older one is used.
    b = tmp_path / 'source_only'
    _jsonl(str(b / '20240101_000000' / 'vis_data' / 'scalars.json'),
           [TRAIN_LINE, _val(30.0, 40.0, 20.0, 1000), TRAIN_LINE, _val(33.333, 44.444, 22.2, 2000)])
    _jsonl(str(b / '20240102_000000' / 'vis_data' / 'scalars.json'), [TRAIN_LINE])
    # C: a tools/test.py run without --out: <ts>/<ts>.json, other classes.
    c = tmp_path / 'test_run'
    _jsonl(str(c / '20240103_120000' / '20240103_120000.json'),
           [{'aAcc': 88.0, 'mIoU': 55.0, 'mAcc': 66.0, 'IoU.sky': 11.0, 'IoU.car': 99.0}])
    return a, b, c


def test_load_run_metrics_search_order(work_dirs):
    a, b, c = work_dirs
    run = load_run_metrics(str(a))
    assert run.source == str(a / 'results.json') and run.classes == ['sky', 'road']
    assert run.metrics['mIoU'] == 65.0 and run.metrics['IoU.road'] == 80.0
    run = load_run_metrics(str(b))
    assert run.source.endswith(osp.join('20240101_000000', 'vis_data', 'scalars.json'))
    assert run.metrics['mIoU'] == 33.333 and run.classes == ['sky', 'road']
    assert 'step' not in run.metrics
    run = load_run_metrics(str(c))
    assert run.classes == ['sky', 'car'] and run.metrics['aAcc'] == 88.0
    # A file works too: a log or a results JSON.
    run = load_run_metrics(str(b / '20240101_000000' / 'vis_data' / 'scalars.json'))
    assert run.metrics['mIoU'] == 33.333


def test_missing_metrics_are_one_clear_error(tmp_path):
    with pytest.raises(MissingDataError, match='Run not found'):
        load_run_metrics(str(tmp_path / 'nowhere'))
    (tmp_path / 'empty' / '20240101_000000' / 'vis_data').mkdir(parents=True)
    _jsonl(str(tmp_path / 'empty' / '20240101_000000' / 'vis_data' / 'scalars.json'), [TRAIN_LINE])
    with pytest.raises(MissingDataError, match='tools/test.py CONFIG CKPT --out'):
        load_run_metrics(str(tmp_path / 'empty'))


def test_table_rows_columns_and_formats(work_dirs, tmp_path):
    runs, classes = gather_runs([str(d) for d in work_dirs])
    assert list(runs) == ['madm_event', 'source_only', 'test_run']
    assert classes == ['sky', 'road', 'car']  # union, first-seen order
    assert benchmark_markdown(runs, classes).splitlines() == [
        '| method | sky | road | car | mIoU | mAcc | aAcc |',
        '|---|---|---|---|---|---|---|',
        '| madm_event | 50.00 | 80.00 | - | 65.00 | 70.00 | 91.50 |',
        '| source_only | 22.20 | 44.44 | - | 33.33 | 60.00 | 90.00 |',
        '| test_run | 11.00 | - | 99.00 | 55.00 | 66.00 | 88.00 |',
    ]
    assert benchmark_csv(runs, classes).splitlines() == [
        'method,sky,road,car,mIoU,mAcc,aAcc',
        'madm_event,50.00,80.00,,65.00,70.00,91.50',
        'source_only,22.20,44.44,,33.33,60.00,90.00',
        'test_run,11.00,,99.00,55.00,66.00,88.00',
    ]
    write_benchmark_table(runs, classes, str(tmp_path / 't.md'))
    assert (tmp_path / 't.md').read_text() == benchmark_markdown(runs, classes) + '\n'
    with pytest.raises(ValueError, match='.md or .csv'):
        write_benchmark_table(runs, classes, str(tmp_path / 't.txt'))


def test_names_must_match_runs(work_dirs):
    a, b, _ = work_dirs
    runs, _ = gather_runs([str(a), str(b)], names=['MADM', 'Source only'])
    assert list(runs) == ['MADM', 'Source only']
    with pytest.raises(ValueError, match='one name per run'):
        gather_runs([str(a), str(b)], names=['MADM'])
    with pytest.raises(ValueError, match='unique'):
        gather_runs([str(a), str(a)])
