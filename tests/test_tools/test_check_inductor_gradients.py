"""tools/check_inductor_gradients.py: its verdicts and exit status."""
import sys

import pytest
import torch

from _helpers import REPO_ROOT

sys.path.insert(0, f'{REPO_ROOT}/tools')
import check_inductor_gradients as tool  # noqa: E402


def test_right_gradients_exit_0(capsys):
    try:
        assert tool.main(['--backend', 'aot_eager', '--shapes', '16x4', '8X2']) == 0
    finally:
        torch._dynamo.reset()
    out = capsys.readouterr().out
    assert 'aot_eager on cpu, tolerance 0.001' in out
    assert '16 channels, 4x4: right' in out and '8 channels, 2x2: right' in out


def test_one_wrong_shape_exits_1_and_is_counted(monkeypatch, capsys):
    results = {16: {'norm.weight': 0.41, 'up_conv.bias': 4e-7, 'ff_in.bias': float('nan')},
               32: {'norm.weight': 1e-7}}
    monkeypatch.setattr(tool, 'compiled_gradient_error',
                        lambda backend, device, channels, size: results[channels])
    assert tool.main(['--shapes', '16x4', '32x4']) == 1
    out = capsys.readouterr().out
    assert '16 channels, 4x4: WRONG: 2 of 3 gradients (largest nan, ff_in.bias)' in out
    assert '32 channels, 4x4: right (largest 1e-07, norm.weight)' in out


def test_shapes_are_channels_x_size():
    assert tool.parse_args([]).shapes == [(64, 4), (1280, 16), (640, 32)]
    with pytest.raises(SystemExit):
        tool.parse_args(['--shapes', '1280'])
