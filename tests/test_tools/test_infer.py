"""tools/infer.py on an image, a folder and a DSEC events.h5, in a fresh interpreter.

The checkpoint is a bare state dict (read with torch's default weights_only=True) of the
tiny EncoderDecoder whose head always predicts class 1, so every mask is one colour.
"""
import os
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

from _helpers import REPO_ROOT, run_tool
from madm.datasets.conversion.event_representations import identity_rectify_map
from madm.datasets.conversion.event_simulator import write_events_h5, write_rectify_map
from madm.utils import atomic_write_image

pytestmark = pytest.mark.slow

TINY_CONFIG = osp.join(REPO_ROOT, 'tests', 'data', 'configs', 'tiny_encoder_decoder.py')
CLASS_1_COLOUR = [0, 255, 0]  # palette[1] of the tiny config's metainfo


@pytest.fixture(scope='module')
def model_files(tmp_path_factory):
    root = tmp_path_factory.mktemp('infer_model')
    config = str(root / 'tiny_infer.py')
    with open(config, 'w') as f:
        # The test pipeline of a MADM config, scaled down: loader, label steps, eval resize.
        f.write(f"_base_ = [{TINY_CONFIG!r}]\n"
                "test_pipeline = [dict(type='LoadModalityImage', max_height=440),\n"
                "                 dict(type='LoadLabelMap'), dict(type='MapLabels'),\n"
                "                 dict(type='ReferenceEvalResize', scale=(64, 64)),\n"
                "                 dict(type='PackSegInputs')]\n")
    init_default_scope('mmseg')
    model = MODELS.build(Config.fromfile(config).model)
    with torch.no_grad():
        model.decode_head.conv_seg.weight.zero_()
        model.decode_head.conv_seg.bias.copy_(torch.tensor([0.0, 5.0, 0.0]))
    ckpt = str(root / 'constant.pth')
    torch.save({'state_dict': model.state_dict()}, ckpt)
    return config, ckpt


def _read_rgb(path):
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    assert image is not None, path
    return image[..., ::-1]


def _check_outputs(out_dir, expected: dict[str, tuple[int, int]], images: dict | None = None):
    files = sorted(os.listdir(out_dir))
    assert files == sorted(f'{n}_{kind}.png' for n in expected for kind in ('mask', 'overlay'))
    for name, size in expected.items():
        mask = _read_rgb(osp.join(out_dir, f'{name}_mask.png'))
        overlay = _read_rgb(osp.join(out_dir, f'{name}_overlay.png'))
        assert mask.shape == overlay.shape == (*size, 3)
        assert (mask == CLASS_1_COLOUR).all()
        if images is not None:  # overlay = 0.5 image + 0.5 mask, rounded half to even
            blend = np.rint(0.5 * images[name].astype(np.float32) + 0.5 * mask)
            np.testing.assert_array_equal(overlay, blend.astype(np.uint8))


def test_infer_one_image_and_a_folder(model_files, tmp_path):
    config, ckpt = model_files
    rng = np.random.default_rng(0)
    images = {'frame_a': rng.integers(0, 256, (48, 80, 3), dtype=np.uint8),
              'frame_b': rng.integers(0, 256, (72, 40, 3), dtype=np.uint8)}
    for name, image in images.items():
        atomic_write_image(str(tmp_path / 'in' / f'{name}.png'), image)
    (tmp_path / 'in' / 'notes.txt').write_text('not an image')

    run_tool(['tools/infer.py', config, ckpt, str(tmp_path / 'in' / 'frame_a.png'),
              '--out-dir', str(tmp_path / 'one'), '--device', 'cpu'])
    _check_outputs(str(tmp_path / 'one'), {'frame_a': (48, 80)}, images)

    run_tool(['tools/infer.py', config, ckpt, str(tmp_path / 'in'), '--out-dir',
              str(tmp_path / 'many'), '--opacity', '0.5'])
    _check_outputs(str(tmp_path / 'many'), {'frame_a': (48, 80), 'frame_b': (72, 40)}, images)


def test_infer_dsec_events_h5(model_files, tmp_path):
    config, ckpt = model_files
    rng = np.random.default_rng(0)
    n, t_offset = 5000, 49_599_300_000
    t = np.sort(rng.integers(t_offset, t_offset + 90_000, n))  # 90 ms of events
    ev_dir = tmp_path / 'zurich_city_13_a' / 'events' / 'left'
    write_events_h5(str(ev_dir / 'events.h5'), rng.integers(0, 640, n), rng.integers(0, 480, n),
                    t, rng.integers(0, 2, n), t_offset)
    write_rectify_map(str(ev_dir / 'rectify_map.h5'), identity_rectify_map(480, 640))

    proc = run_tool(['tools/infer.py', config, ckpt, str(ev_dir / 'events.h5'), '--out-dir',
                     str(tmp_path / 'out'), '--window-ms', '50'])
    # Two 50 ms windows cover the 90 ms; frames are cut to the 640x440 label frame.
    _check_outputs(str(tmp_path / 'out'), {'zurich_city_13_a_000000': (440, 640),
                                           'zurich_city_13_a_000001': (440, 640)})
    assert '2/2' in proc.stdout + proc.stderr  # the progress bar ran to the end
