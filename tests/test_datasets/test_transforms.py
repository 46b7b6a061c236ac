"""Loading, label-mapping and resize transforms."""
import numpy as np
import pytest
from mmcv.transforms import Compose
from PIL import Image

from madm.datasets.transforms import (LoadLabelMap, LoadModalityImage, MapLabels,
                                      ReferenceEvalResize)
from madm.datasets.transforms.image_io import CorruptedImageError



def save_png(path: str, array: np.ndarray) -> str:
    Image.fromarray(array).save(path)
    return path


def _load(path, **kwargs):
    return LoadModalityImage(**kwargs)(dict(img_path=path))


def test_gray_is_replicated_and_rgba_drops_alpha(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = _load(save_png(str(tmp_path / 'g.png'), gray))
    assert out['img'].shape == (3, 4, 3) and out['img_shape'] == out['ori_shape'] == (3, 4)
    assert all((out['img'][..., c] == gray).all() for c in range(3))
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0], rgba[..., 2], rgba[..., 3] = 200, 10, 77
    img = _load(save_png(str(tmp_path / 'a.png'), rgba))['img']
    assert img.shape == (2, 2, 3)
    assert img[0, 0].tolist() == [10, 0, 200]  # BGR, like LoadImageFromFile


def test_depth_encodings(tmp_path):
    # DELIVER convention: near = dark; inverse depth makes near bright.
    depth = np.array([[0, 128, 255]], np.uint8)
    path = save_png(str(tmp_path / 'd.png'), depth)
    inv = _load(path, encoding='inverse_depth')['img']
    assert inv[0, :, 0].tolist()[0] == 255 and inv[0, 2, 0] == 0
    assert 0 < inv[0, 1, 0] < 255
    colour = _load(path, encoding='colormap')['img']
    assert colour.shape == (1, 3, 3)
    assert not (colour[0, 0] == colour[0, 0, 0]).all()  # a real colour, not gray


def test_infrared_clahe_stretches_contrast(tmp_path):
    ir = np.tile(np.array([100, 101, 102, 103], np.uint8), (16, 4))
    img = _load(save_png(str(tmp_path / 'ir.png'), ir), encoding='clahe',
                clahe_tile_grid_size=(1, 1))['img']
    assert np.ptp(img[..., 0]) > np.ptp(ir)
    assert (img[..., 0] == img[..., 2]).all()


def test_event_frame_cropped_to_label_height(tmp_path):
    out = _load(save_png(str(tmp_path / 'e.png'), np.zeros((48, 64), np.uint8)), max_height=44)
    assert out['img'].shape == (44, 64, 3)


def test_corrupted_png_names_the_file(tmp_path):
    good = save_png(str(tmp_path / 'ok.png'), np.zeros((32, 32), np.uint8))
    data = open(good, 'rb').read()
    bad = tmp_path / 'broken.png'
    bad.write_bytes(data[:len(data) // 2])
    with pytest.raises(CorruptedImageError, match='broken.png'):
        _load(str(bad))
    with pytest.raises(CorruptedImageError, match='broken.png'):
        LoadLabelMap()(dict(seg_map_path=str(bad)))


def test_label_red_channel_and_bit_depth(tmp_path):
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[..., 0] = [[1, 2, 3], [4, 5, 6]]
    path = save_png(str(tmp_path / 'sem.png'), rgb)
    out = LoadLabelMap(channel='red')(dict(seg_map_path=path))
    assert out['gt_seg_map'].tolist() == [[1, 2, 3], [4, 5, 6]]
    assert out['seg_fields'] == ['gt_seg_map']
    with pytest.raises(ValueError, match="channel='red'"):
        LoadLabelMap()(dict(seg_map_path=path))
    path16 = save_png(str(tmp_path / 'l16.png'), np.full((2, 2), 300, np.uint16))
    with pytest.raises(ValueError, match='l16.png.*8-bit'):
        LoadLabelMap()(dict(seg_map_path=path16))


def test_map_labels_values_and_range_check():
    label = np.array([[9, 3, 255]], np.uint8)
    out = MapLabels('cityscapes_to_9')(dict(gt_seg_map=label))
    assert out['gt_seg_map'].tolist() == [[6, 255, 255]]
    out = MapLabels()(dict(gt_seg_map=label, label_mapping='cityscapes_to_11'))
    assert out['gt_seg_map'].tolist() == [[7, 9, 255]]
    out = MapLabels({1: 0, 2: 1})(dict(gt_seg_map=np.array([[2, 1]], np.uint8)))
    assert out['gt_seg_map'].tolist() == [[1, 0]]
    with pytest.raises(ValueError, match=r'x/lbl.png.*\[19, 40\]'):
        MapLabels('cityscapes_to_11')(dict(gt_seg_map=np.array([[19, 40, 0]], np.uint8),
                                           seg_map_path='x/lbl.png'))
    unchecked = MapLabels('cityscapes_to_11', check_range=False)(
        dict(gt_seg_map=np.array([[19]], np.uint8)))
    assert unchecked['gt_seg_map'].tolist() == [[255]]
    with pytest.raises(KeyError, match='label_mapping'):
        MapLabels()(dict(gt_seg_map=label))


def test_reference_resize_scores_at_resized_shape():
    img = np.zeros((2, 4, 3), np.uint8)
    label = np.array([[0, 1, 2, 3], [4, 5, 6, 7]], np.uint8)
    out = ReferenceEvalResize(scale=(8, 8))(
        dict(img=img, gt_seg_map=label, seg_fields=['gt_seg_map'], ori_shape=(2, 4)))
    assert out['img'].shape == (8, 8, 3) and out['ori_shape'] == (8, 8)
    assert set(np.unique(out['gt_seg_map']).tolist()) == set(range(8))  # nearest, no blending
    assert out['gt_seg_map'][0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_reference_resize_is_pils_by_default():
    from PIL import Image
    # Thin diagonal strokes, as in an event edge frame: PIL's shrinking bilinear filter
    # averages over more pixels than OpenCV's.
    img = np.zeros((440, 640, 3), np.uint8)
    for k in range(0, 640, 9):
        rows = np.arange(440)
        img[rows, (rows + k) % 640] = 255
    label = (np.arange(440 * 640) % 11).reshape(440, 640).astype(np.uint8)
    out = ReferenceEvalResize()(dict(img=img.copy(), gt_seg_map=label.copy()))
    want_img = np.asarray(Image.fromarray(img).resize((512, 512), Image.BILINEAR))
    want_label = np.asarray(Image.fromarray(label).resize((512, 512), Image.NEAREST))
    np.testing.assert_array_equal(out['img'], want_img)
    np.testing.assert_array_equal(out['gt_seg_map'], want_label)
    cv2_out = ReferenceEvalResize(backend='cv2')(dict(img=img.copy(), gt_seg_map=label.copy()))
    assert np.abs(cv2_out['img'].astype(int) - want_img).mean() > 1
    with pytest.raises(ValueError, match='backend'):
        ReferenceEvalResize(backend='skimage')


def test_mmseg_resize_also_resizes_loaded_labels(tmp_path):
    from mmengine.registry import init_default_scope
    init_default_scope('mmseg')
    path = save_png(str(tmp_path / 'l.png'), np.array([[0, 1], [2, 3]], np.uint8))
    pipe = Compose([dict(type='LoadLabelMap'), dict(type='Resize', scale=(4, 4), keep_ratio=False)])
    out = pipe(dict(seg_map_path=path, img=np.zeros((2, 2, 3), np.uint8)))
    assert out['gt_seg_map'].shape == (4, 4) and out['gt_seg_map'][3, 3] == 3
