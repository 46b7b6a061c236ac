"""Synthetic datasets: real layouts and formats, determinism, resume, and a real modality gap."""
import glob
import importlib.util
import os
import os.path as osp

import cv2
import h5py
import numpy as np
import pytest

from madm.datasets.conversion import synthetic as syn
from madm.datasets.conversion.event_simulator import simulate_events

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _read(path):
    return cv2.imread(path, cv2.IMREAD_UNCHANGED)


def _class_means(images, labels, classes):
    return {c: np.mean(np.concatenate([img[lab == c] for img, lab in zip(images, labels)]),
                       axis=0) for c in classes}


@pytest.fixture(scope='module')
def depth_root(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('syn_depth'))
    syn.generate_synthetic_dataset(out, 'depth', num_source=8, num_target_train=3,
                                   num_target_test=2, source_size=(96, 48),
                                   target_size=(48, 48), seed=3)
    return out


def test_cityscapes_and_deliver_layout_and_encoding(depth_root):
    imgs = sorted(glob.glob(osp.join(depth_root, 'cityscapes/leftImg8bit/train/*/*_000019_leftImg8bit.png')))
    labs = sorted(glob.glob(osp.join(depth_root, 'cityscapes/gtFine/train/*/*_000019_gtFine_labelTrainIds.png')))
    assert len(imgs) == len(labs) == 8
    assert _read(imgs[0]).shape == (48, 96, 3)
    label = _read(labs[0])
    assert label.ndim == 2 and set(np.unique(label)) <= set(range(19))
    depth = sorted(glob.glob(osp.join(depth_root, 'DELIVER/depth/*/train/MAP_*/*_depth_front.png')))
    sem = sorted(glob.glob(osp.join(depth_root, 'DELIVER/semantic/*/test/MAP_*/*_semantic_front.png')))
    assert len(depth) == 3 and len(sem) == 2
    d = _read(depth[0])
    assert d.shape == (48, 48, 3) and np.array_equal(d[..., 0], d[..., 2])  # gray, no colour
    s = cv2.cvtColor(_read(sem[0]), cv2.COLOR_BGR2RGB)
    assert np.all(s[..., 1:] == 0) and set(np.unique(s[..., 0])) <= set(range(1, 26))


def test_source_colour_carries_class_but_depth_carries_geometry(depth_root):
    imgs = sorted(glob.glob(osp.join(depth_root, 'cityscapes/leftImg8bit/train/*/*.png')))
    labs = [p.replace('leftImg8bit', 'gtFine', 1).replace('_leftImg8bit', '_gtFine_labelTrainIds')
            for p in imgs]
    rgb = [cv2.cvtColor(_read(p), cv2.COLOR_BGR2RGB).astype(float) for p in imgs]
    lab = [_read(p) for p in labs]
    means = _class_means(rgb, lab, (syn.SKY, syn.ROAD, syn.VEGETATION))
    assert means[syn.SKY][2] - means[syn.SKY][0] > 60  # blue sky
    assert means[syn.VEGETATION][1] > means[syn.VEGETATION][0] + 30  # green vegetation
    # depth: sky far (white), ground near the bottom rows dark
    scene = syn.generate_scene(48, 48, np.random.default_rng(0))
    depth = syn.render_depth(scene)[..., 0]
    assert np.all(depth[scene.label == syn.SKY] == 255)
    assert depth[-1].mean() < 80


def test_determinism_and_resume(tmp_path, depth_root):
    again = str(tmp_path / 'again')
    syn.generate_cityscapes(osp.join(again, 'cityscapes'), 8, (96, 48), seed=3)
    first = sorted(glob.glob(osp.join(again, 'cityscapes/**/*.png'), recursive=True))
    for path in first:
        ref = path.replace(again, depth_root)
        assert open(path, 'rb').read() == open(ref, 'rb').read()
    mtimes = [os.stat(p).st_mtime_ns for p in first]
    syn.generate_cityscapes(osp.join(again, 'cityscapes'), 8, (96, 48), seed=3)
    assert [os.stat(p).st_mtime_ns for p in first] == mtimes  # nothing rewritten
    other = syn.render_rgb(syn.generate_scene(48, 96, np.random.default_rng([4, 0, 0, 0])),
                           np.random.default_rng(1))
    assert not np.array_equal(other, cv2.cvtColor(_read(first[len(first) // 2]), cv2.COLOR_BGR2RGB))


def test_fmb_infrared_heat_signal_and_layout(tmp_path):
    root = syn.generate_fmb_infrared(str(tmp_path / 'FMB'), 6, 2, size=(160, 120), seed=1)
    assert sorted(os.listdir(osp.join(root, 'test', 'Infrared'))) == ['00007.png', '00008.png']
    ir = [_read(p).astype(float) for p in sorted(glob.glob(osp.join(root, 'train/Infrared/*.png')))]
    lab = [_read(p) for p in sorted(glob.glob(osp.join(root, 'train/Label/*.png')))]
    assert ir[0].shape == (120, 160) and all(set(np.unique(x)) <= set(range(15)) for x in lab)
    assert _read(osp.join(root, 'train/Visible/00001.png')).shape == (120, 160, 3)
    means = _class_means(ir, lab, (7, 8, 9, 1))  # sky, person, car, road (FMB ids)
    assert means[8] > means[9] > means[1] > means[7] + 50


def test_dsec_events_real_format_and_motion_signal(tmp_path):
    root = syn.generate_dsec_events(str(tmp_path / 'DSEC'), num_train=2, num_test=1, seed=0)
    seq_train, seq_test = 'synth_train_00_a', 'synth_test_00_a'
    events = osp.join(root, 'events/train', seq_train, 'events/left/events.h5')
    with h5py.File(events, 'r') as f:
        for key in ('events/x', 'events/y', 'events/t', 'events/p', 'ms_to_idx'):
            assert '32001' in f[key]._filters
        assert f['events/x'].dtype == np.uint16 and f['events/x'].shape[0] > 1000
    ts = np.loadtxt(osp.join(root, 'semantic/train', seq_train, f'{seq_train}_semantic_timestamps.txt'),
                    dtype=np.int64)
    labels = sorted(glob.glob(osp.join(root, 'semantic/train', seq_train, '11classes/*.png')))
    assert len(ts) == len(labels) == 3
    label = _read(labels[1])
    assert label.shape == (440, 640) and set(np.unique(label)) <= set(range(11))
    assert osp.isfile(osp.join(root, 'test_semantic_labels', seq_test, '11classes/000001.png'))
    assert sorted(os.listdir(osp.join(root, '69mask_train_edges', seq_train))) == [
        '000001.png', '000002.png']
    edge = _read(osp.join(root, '69mask_train_edges', seq_train, '000002.png'))
    assert edge.shape == (440, 640) and np.median(edge) == 127
    assert 0.001 < (edge != 127).mean() < 0.5


def test_simulated_events_follow_motion_not_the_featureless_sky():
    """Textured surfaces fire where they move; the featureless sky stays (almost) silent."""
    offsets = np.linspace(0.05, 0.0, 6)
    sky_rate, rest_rate = [], []
    for seed in range(4):
        rng = np.random.default_rng(seed)
        scene = syn.generate_scene(120, 160, rng)
        frames = syn.render_motion_frames(scene, syn.render_gray_world(scene, rng), offsets, rng)
        x, y, _, _ = simulate_events(frames, (10**6 - offsets * 1e6).astype(np.int64), 0.25)
        counts = np.bincount(y.astype(np.int64) * 160 + x, minlength=120 * 160).reshape(120, 160)
        sky = scene.label == syn.SKY
        sky_rate.append(counts[sky].mean())
        rest_rate.append(counts[~sky].mean())
    assert np.mean(rest_rate) > 2 * np.mean(sky_rate)
    assert np.mean(rest_rate) > 0.02  # enough events to see the scene at all


def test_rgb_brightness_shares_the_depth_cue():
    """Aerial perspective: RGB brightness rises with distance, as the depth target's gray."""
    corr = []
    for i in range(6):
        rng = np.random.default_rng(i)
        scene = syn.generate_scene(60, 120, rng)
        gray = syn.render_rgb(scene, rng).astype(float).mean(axis=-1)
        depth = syn.render_depth(scene)[..., 0].astype(float)
        ground_and_objects = scene.label != syn.SKY
        corr.append(np.corrcoef(gray[ground_and_objects], depth[ground_and_objects])[0, 1])
    assert np.mean(corr) > 0.3


def test_instance_contours_mark_boundaries_only():
    instance = np.zeros((6, 6), np.int32)
    instance[2:4, 2:4] = 1
    contour = syn.instance_contours(instance)
    assert contour[2, 1] and contour[1, 2] and contour[3, 3]  # left/top neighbours and inside edge
    assert not contour[0, 0] and not contour[5, 5] and not contour[2, 2]


def test_event_world_has_no_class_intensity_signal():
    rng = np.random.default_rng(0)
    per_class = {syn.SKY: [], syn.ROAD: [], syn.CAR: []}
    for _ in range(12):
        scene = syn.generate_scene(60, 80, rng)
        gray = syn.render_gray_world(scene, rng)
        for c in per_class:
            if (scene.label == c).any():
                per_class[c].append(gray[scene.label == c].mean())
    means = [np.mean(v) for v in per_class.values()]
    assert max(means) - min(means) < 0.15  # levels are U(0.25, 0.75) whatever the class


def test_cli_help_and_bad_event_size(tmp_path):
    spec = importlib.util.spec_from_file_location('synthetic_cli',
                                                  osp.join(ROOT, 'data_converters/synthetic.py'))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    with pytest.raises(SystemExit) as exc:
        cli.main(['--help'])
    assert exc.value.code == 0
    with pytest.raises(ValueError, match='640x480'):
        cli.main(['--out', str(tmp_path), '--modality', 'event', '--num-source', '0',
                  '--target-size', '320', '240'])


def test_no_object_fills_the_view():
    """Objects stand at least 6 m away (16 m for buses/trucks), so none covers the frame."""
    ground_and_sky = (syn.ROAD, syn.SIDEWALK, syn.TERRAIN, syn.SKY, syn.BUILDING, syn.WALL)
    largest = []
    for i in range(30):
        scene = syn.generate_scene(120, 160, np.random.default_rng(i))
        objects = [k for k, c in enumerate(scene.classes) if c not in ground_and_sky]
        areas = np.bincount(scene.instance.ravel(), minlength=len(scene.classes))[objects]
        largest.append(areas.max() / scene.instance.size if len(objects) else 0.0)
    # a 4.5 m car at 8 m on a 160 px wide, 0.9*W focal image: 4.5 * 144 / 8 = 81 px of 160
    assert max(largest) < 0.35
    # and the scenes are not empty of objects either
    assert np.mean(largest) > 0.005


def test_depth_relief_gives_surfaces_their_shape():
    """Kerb, rough grass, rounded cars, receding facades; the sky and the labels stay."""
    kerb_steps, terrain_rough, road_rough, car_spread = [], [], [], []
    for i in range(8):
        scene = syn.generate_scene(96, 128, np.random.default_rng(i))
        relief = syn.add_depth_relief(scene, np.random.default_rng(100 + i))
        label = scene.label
        np.testing.assert_array_equal(relief.instance, scene.instance)
        assert np.all(relief.depth[label == syn.SKY] == scene.depth[label == syn.SKY])
        ratio = np.log(relief.depth / scene.depth)
        kerb_steps += list(ratio[label == syn.SIDEWALK])
        terrain_rough.append(ratio[label == syn.TERRAIN].std())
        road_rough.append(ratio[label == syn.ROAD].std())
        for inst in np.flatnonzero(scene.classes == syn.CAR):
            if (scene.instance == inst).sum() > 20:
                car_spread.append(np.ptp(relief.depth[scene.instance == inst]))
    # the raised sidewalk is nearer than the road plane on the same row (by h / (h - kerb))
    assert np.allclose(kerb_steps, np.log(1.35 / 1.5), atol=1e-3)
    assert np.mean(terrain_rough) > 0.05 and max(road_rough) == 0.0  # the road stays flat
    assert car_spread and min(car_spread) > 0  # no car is a constant-depth cut-out any more
    again = syn.add_depth_relief(scene, np.random.default_rng(107))
    np.testing.assert_array_equal(again.depth, relief.depth)


def test_a_folder_from_another_generator_version_is_refused(tmp_path):
    fresh = tmp_path / 'fresh'
    syn.check_generator_version(str(fresh))  # new folder: the version is recorded first
    assert (fresh / 'synthetic_version.txt').read_text().strip() == str(syn.GENERATOR_VERSION)
    syn.check_generator_version(str(fresh))  # same version: resumes
    old = tmp_path / 'old'
    (old / 'cityscapes').mkdir(parents=True)  # written before versions were recorded
    with pytest.raises(ValueError, match='Delete the folder'):
        syn.generate_synthetic_dataset(str(old), 'depth', 2, 2, 1, source_size=(64, 32))
    assert sorted(p.name for p in old.iterdir()) == ['cityscapes']  # nothing written or lost
    (fresh / 'synthetic_version.txt').write_text('1\n')
    with pytest.raises(ValueError, match='version 1'):
        syn.check_generator_version(str(fresh))
