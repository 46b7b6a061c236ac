"""tools/benchmark_depthwise.py on the CPU at a small shape."""
import json
import os.path as osp
import sys

import pytest
from _helpers import REPO_ROOT

sys.path.insert(0, osp.join(REPO_ROOT, 'tools'))
import benchmark_depthwise as depthwise_tool  # noqa: E402


def test_every_implementation_is_timed_and_checked_against_fp32(tmp_path, capsys):
    out = tmp_path / 'depthwise.json'
    rows = depthwise_tool.main(['--device', 'cpu', '--channels', '8', '--size', '24', '20',
                                '--dilations', '2', '6', '--impls', 'conv', 'conv channels-last',
                                '--amp', 'none', '--iters', '1', '--warmup', '0',
                                '--out', str(out)])
    with open(out) as f:
        assert json.load(f) == rows
    assert [(r['dilation'], r['impl']) for r in rows] == [
        (2, 'conv'), (2, 'conv channels-last'), (6, 'conv'), (6, 'conv channels-last')]
    for r in rows:
        assert r['forward_ms'] > 0 and r['forward_backward_ms'] > 0
        assert set(r['max_abs_err']) == {'out', 'grad_x', 'grad_w'}
        # fp32 against the fp32 reference: equal up to summation order.
        for key, err in r['max_abs_err'].items():
            assert err <= 1e-5 * max(1.0, r['ref_max_abs'][key]), (r['impl'], key, err)
    table = capsys.readouterr().out
    assert '| 6 | conv channels-last |' in table and 'forward + backward ms' in table


def test_cpu_autocast_channels_last_is_refused():
    with pytest.raises(ValueError, match='oneDNN'):
        depthwise_tool.main(['--device', 'cpu', '--channels', '8', '--size', '16', '16',
                             '--impls', 'conv channels-last', '--amp', 'bf16'])
