"""madm.apis.inference: pipeline surgery, painting, event windows, model loading."""
import os.path as osp

import cv2
import numpy as np
import pytest
from mmengine.config import Config

from _helpers import REPO_ROOT
from _infer_model import CONFIG_PALETTE, save_constant_checkpoint
from madm.apis.inference import (SegmentorInferencer, colorize_mask, event_recording_name,
                                 fixed_windows, inference_pipeline, input_kind, load_segmentor,
                                 overlay_mask, plan_event_frames, run_inference)
from madm.datasets.conversion.event_representations import identity_rectify_map
from madm.datasets.conversion.event_simulator import write_events_h5, write_rectify_map
from madm.utils import MissingDataError, atomic_write_image


def test_inference_pipeline_of_a_madm_config_drops_labels_and_keeps_input_size():
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', 'madm', 'rgb2event.py'))
    loader, rest = inference_pipeline(cfg.test_pipeline, from_array=False)
    assert loader == dict(type='LoadModalityImage', max_height=440)
    # ReferenceEvalResize would make ori_shape 512x512; Resize keeps the input's size.
    assert rest == [dict(type='Resize', scale=(512, 512), keep_ratio=False, backend='pillow'),
                    dict(type='PackSegInputs')]
    loader, rest_array = inference_pipeline(cfg.test_pipeline, from_array=True)
    assert loader == dict(type='LoadImageFromNDArray') and rest_array == rest
    # The config itself is left untouched.
    assert cfg.test_pipeline[3].type == 'ReferenceEvalResize'


def test_inference_pipeline_needs_a_loading_step():
    with pytest.raises(ValueError, match='must start with one of'):
        inference_pipeline([dict(type='Resize', scale=(8, 8))], from_array=False)


def test_colorize_and_overlay_values():
    palette = [[10, 20, 30], [200, 100, 0]]
    mask = colorize_mask(np.array([[0, 1], [1, 255]]), palette)
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, [[[10, 20, 30], [200, 100, 0]],
                                         [[200, 100, 0], [0, 0, 0]]])  # 255 -> black
    image = np.full((2, 2, 3), 100, np.uint8)
    # 0.75 * 100 + 0.25 * (10, 20, 30) = (77.5, 80, 82.5) -> rint (78, 80, 82)
    np.testing.assert_array_equal(overlay_mask(image, mask, 0.25)[0, 0], [78, 80, 82])
    np.testing.assert_array_equal(overlay_mask(image, mask, 0.0), image)
    np.testing.assert_array_equal(overlay_mask(image, mask, 1.0), mask)
    with pytest.raises(ValueError, match='opacity'):
        overlay_mask(image, mask, 1.5)


def test_fixed_windows_cover_the_recording():
    assert fixed_windows(1000, 120_000, 50) == [(0, 1000, 51_000), (1, 51_000, 101_000),
                                                (2, 101_000, 151_000)]
    assert fixed_windows(0, 50_000, 50) == [(0, 0, 50_000)]
    assert fixed_windows(0, 1, 50) == [(0, 0, 50_000)]
    with pytest.raises(ValueError):
        fixed_windows(0, 10, 0)


def test_event_recording_name_and_input_kind(tmp_path):
    assert event_recording_name('/d/train/zurich_city_00_a/events/left/events.h5') == \
        'zurich_city_00_a'
    assert event_recording_name('/d/rec.h5') == 'rec'
    (tmp_path / 'a.png').write_bytes(b'')
    (tmp_path / 'a.txt').write_bytes(b'')
    (tmp_path / 'e.h5').write_bytes(b'')
    assert input_kind(str(tmp_path)) == 'folder'
    assert input_kind(str(tmp_path / 'a.png')) == 'image'
    assert input_kind(str(tmp_path / 'e.h5')) == 'events'
    with pytest.raises(ValueError, match='Unsupported input'):
        input_kind(str(tmp_path / 'a.txt'))
    with pytest.raises(MissingDataError, match='Input not found'):
        input_kind(str(tmp_path / 'missing.png'))


def test_load_segmentor_palette_from_config_or_checkpoint_meta(tiny_model_files, tmp_path):
    config, ckpt = tiny_model_files
    model = load_segmentor(config, ckpt, device='cpu')
    assert model.dataset_meta == dict(classes=('a', 'b', 'c'), palette=CONFIG_PALETTE)
    assert not model.training

    meta_palette = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    ckpt_meta = str(tmp_path / 'with_meta.pth')
    save_constant_checkpoint(ckpt_meta, config, meta=dict(
        dataset_meta=dict(classes=('x', 'y', 'z'), palette=meta_palette)))
    model = load_segmentor(config, ckpt_meta, device='cpu')
    assert model.dataset_meta == dict(classes=('x', 'y', 'z'), palette=meta_palette)

    with pytest.raises(MissingDataError, match='Checkpoint not found'):
        load_segmentor(config, str(tmp_path / 'nope.pth'))


def test_inferencer_predicts_at_the_input_size(tiny_model_files, tmp_path):
    config, ckpt = tiny_model_files
    inferencer = SegmentorInferencer(load_segmentor(config, ckpt))
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)
    path = str(tmp_path / 'img.png')
    atomic_write_image(path, rgb)
    loaded, label = inferencer(path)
    np.testing.assert_array_equal(loaded, rgb)  # RGB, as written
    assert label.shape == (48, 80) and (label == 1).all()
    loaded, label = inferencer(rgb[..., ::-1].copy())  # BGR array
    np.testing.assert_array_equal(loaded, rgb)
    assert label.shape == (48, 80) and (label == 1).all()
    loaded, label = inferencer(rgb[..., 0].copy())  # gray array -> replicated
    assert loaded.shape == (48, 80, 3) and label.shape == (48, 80)


def _events(root, seq='zurich_city_13_a', n=3000):
    rng = np.random.default_rng(1)
    t_offset = 10_000_000
    t = np.sort(rng.integers(t_offset, t_offset + 120_000, n))
    ev_dir = osp.join(root, seq, 'events', 'left')
    write_events_h5(osp.join(ev_dir, 'events.h5'), rng.integers(0, 640, n),
                    rng.integers(0, 480, n), t, rng.integers(0, 2, n), t_offset)
    write_rectify_map(osp.join(ev_dir, 'rectify_map.h5'), identity_rectify_map(480, 640))
    return osp.join(ev_dir, 'events.h5'), t_offset, int(t[-1])


def test_plan_event_frames_fixed_or_label_windows(tmp_path):
    events, t_offset, t_last = _events(str(tmp_path))
    frames = plan_event_frames(events, window_ms=50)
    assert frames.name == 'zurich_city_13_a'
    # Events span [t_offset, t_last]; 50 ms windows from t_offset until past t_last.
    count = -(-(t_last - t_offset + 1) // 50_000)
    assert frames.windows == [(k, t_offset + 50_000 * k, t_offset + 50_000 * (k + 1))
                              for k in range(count)]
    ts = tmp_path / 'ts.txt'
    np.savetxt(ts, [t_offset + 10_000, t_offset + 60_000, t_offset + 110_000], fmt='%d')
    frames = plan_event_frames(events, str(ts))
    assert frames.windows == [(1, t_offset + 10_000, t_offset + 60_000),
                              (2, t_offset + 60_000, t_offset + 110_000)]
    with pytest.raises(MissingDataError, match='Timestamps file not found'):
        plan_event_frames(events, str(tmp_path / 'none.txt'))


def test_run_inference_on_events_writes_440x640_frames(tiny_model_files, tmp_path):
    config, ckpt = tiny_model_files
    events, t_offset, _ = _events(str(tmp_path / 'dsec'))
    ts = tmp_path / 'ts.txt'
    np.savetxt(ts, [t_offset + 10_000, t_offset + 60_000], fmt='%d')
    out = tmp_path / 'out'
    names = run_inference(load_segmentor(config, ckpt), events, str(out),
                          timestamps_path=str(ts), show_progress=False)
    assert names == ['zurich_city_13_a_000001']
    mask = cv2.imread(str(out / 'zurich_city_13_a_000001_mask.png'))[..., ::-1]
    overlay = cv2.imread(str(out / 'zurich_city_13_a_000001_overlay.png'))
    assert mask.shape == overlay.shape == (440, 640, 3)
    assert (mask == CONFIG_PALETTE[1]).all()
    # Without its rectify map the recording is refused with the converter's own error.
    (tmp_path / 'dsec' / 'zurich_city_13_a' / 'events' / 'left' / 'rectify_map.h5').unlink()
    with pytest.raises(MissingDataError, match='rectify map not found'):
        run_inference(load_segmentor(config, ckpt), events, str(out), show_progress=False)
