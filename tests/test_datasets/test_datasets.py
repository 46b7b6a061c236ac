"""The four datasets load through mmseg pipelines on tiny real-format trees."""
import pytest

from madm.datasets import (CityscapesTaskDataset, DELIVERDepthDataset, DSECEventDataset,
                           FMBInfraredDataset)
from madm.datasets.class_maps import CLASSES_9, CLASSES_11
from madm.utils.paths import MissingDataError


def _check_packed(sample, num_classes, shape=None):
    img = sample['inputs']
    assert img.shape[0] == 3
    if shape is not None:
        assert tuple(img.shape[1:]) == shape
    label = sample['data_samples'].gt_sem_seg.data
    values = set(label.unique().tolist())
    assert values <= set(range(num_classes)) | {255}
    return label[0].numpy()


@pytest.mark.parametrize('task', ['depth', 'infrared'])
def test_cityscapes_merges_instead_of_dropping(cityscapes_root, task):
    """The metainfo trap: terrain (9) must become vegetation, not 255."""
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                dict(type='MapLabels'), dict(type='PackSegInputs')]
    ds = CityscapesTaskDataset(task=task, data_root=cityscapes_root, pipeline=pipeline)
    assert len(ds) == 3
    classes = CLASSES_9 if task == 'infrared' else CLASSES_11
    assert ds.metainfo['classes'] == classes.classes
    assert ds.metainfo['label_map'] is None
    label = _check_packed(ds[0], len(classes.classes), (4, 20))
    vegetation = classes.classes.index('vegetation')
    assert label[0, 9] == vegetation   # terrain
    assert label[0, 8] == vegetation   # vegetation
    assert label[0, 12] == classes.classes.index('person')  # rider
    assert label[0, 15] == classes.classes.index('car')     # bus
    assert label[0, 3] == (255 if task == 'infrared' else 9)  # wall
    assert label[0, 19] == 255


def test_cityscapes_missing_labels_and_root(cityscapes_root, tmp_path):
    import os
    os.remove(f'{cityscapes_root}/gtFine/train/bremen/'
              'bremen_000000_000019_gtFine_labelTrainIds.png')
    with pytest.raises(MissingDataError, match='data_converters/cityscapes.py'):
        CityscapesTaskDataset(task='event', data_root=cityscapes_root)
    with pytest.raises(MissingDataError, match='Cityscapes root'):
        CityscapesTaskDataset(task='event', data_root=str(tmp_path / 'nowhere'))
    with pytest.raises(MissingDataError, match='Cityscapes val images'):
        CityscapesTaskDataset(task='event', data_root=cityscapes_root, split='val')


def test_cityscapes_metainfo_override_refused(cityscapes_root):
    with pytest.raises(ValueError, match='255'):
        CityscapesTaskDataset(task='depth', data_root=cityscapes_root,
                              metainfo=dict(classes=('road', 'sky')))


@pytest.mark.parametrize('protocol', ['reference', 'native'])
def test_deliver_test_pipelines(deliver_root, protocol):
    load_label = [dict(type='LoadLabelMap', channel='red'), dict(type='MapLabels')]
    if protocol == 'reference':
        pipeline = [dict(type='LoadModalityImage'), *load_label,
                    dict(type='ReferenceEvalResize', scale=(12, 12)), dict(type='PackSegInputs')]
    else:
        pipeline = [dict(type='LoadModalityImage'),
                    dict(type='Resize', scale=(12, 12), keep_ratio=False), *load_label,
                    dict(type='PackSegInputs')]
    ds = DELIVERDepthDataset(data_root=deliver_root, split='test', conditions=('cloud', 'sun'),
                             pipeline=pipeline,
                             test_mode=True)
    assert len(ds) == 8  # 2 conditions x 2 scenes (one corner case) x 2 frames
    assert ds.metainfo['classes'] == CLASSES_11.classes
    sample = ds[0]
    label = _check_packed(sample, 11, (12, 12))
    meta = sample['data_samples'].metainfo
    if protocol == 'reference':
        assert label.shape == (12, 12) and meta['ori_shape'] == (12, 12)
        # nearest 6 -> 12: column 2 comes from raw column 1 (raw 1 = Building -> 1)
        assert label[0, 0] == 255 and label[0, 2] == 1
    else:
        assert label.shape == (6, 6) and meta['ori_shape'] == (6, 6)
        # raw row 0: 255, Building, Fence, Other, Pedestrian, Pole (raw = id + 1)
        assert label[0].tolist() == [255, 1, 2, 255, 3, 4]
        # raw row 1: RoadLine, Road -> road; SideWalk, Vegetation, Cars, Wall
        assert label[1].tolist() == [5, 5, 6, 7, 8, 9]


def test_deliver_conditions_and_train_unlabeled(deliver_root):
    ds = DELIVERDepthDataset(data_root=deliver_root, split='train', conditions=['sun'])
    assert len(ds) == 2
    assert 'seg_map_path' not in ds.get_data_info(0)
    assert '/depth/sun/train/MAP_1_point2/' in ds.get_data_info(0)['img_path']
    with pytest.raises(MissingDataError, match='fog'):
        DELIVERDepthDataset(data_root=deliver_root, split='train', conditions=['fog'])


def test_fmb_infrared(fmb_root):
    pipeline = [dict(type='LoadModalityImage'), dict(type='LoadLabelMap'),
                dict(type='MapLabels'), dict(type='PackSegInputs')]
    ds = FMBInfraredDataset(data_root=fmb_root, split='test', pipeline=pipeline)
    assert len(ds) == 3 and ds.metainfo['classes'] == CLASSES_9.classes
    sample = ds[0]
    img = sample['inputs'].numpy()
    assert (img[0] == img[1]).all() and (img[0] == 430 % 256).all()  # gray 10*43 replicated
    label = _check_packed(sample, 9, (3, 16))
    assert label[0].tolist() == [255, 4, 5, 1, 8, 8, 6, 0, 2, 7, 7, 7, 7, 7, 3, 255]
    assert len(FMBInfraredDataset(data_root=fmb_root, split='train')) == 2


def test_dsec_frame_rule_and_pipeline(dsec_root):
    train = DSECEventDataset(data_root=dsec_root, split='train')
    names = [d['img_path'].rsplit('/', 1)[1] for d in train.load_data_list()]
    assert names == ['000002.png', '000004.png', '000006.png']
    pipeline = [dict(type='LoadModalityImage', max_height=6),
                dict(type='LoadLabelMap', max_height=6),
                dict(type='MapLabels'), dict(type='PackSegInputs')]
    test = DSECEventDataset(data_root=dsec_root, split='test', pipeline=pipeline)
    assert len(test) == 3  # frames 1..3; frame 0 has no preceding event window
    label = _check_packed(test[0], 11, (6, 10))
    assert label[0].tolist() == list(range(10))


def test_empty_split_is_an_error(dsec_root):
    import shutil
    shutil.rmtree(f'{dsec_root}/69mask_test_edges/zurich_city_13_a')
    import os
    os.makedirs(f'{dsec_root}/69mask_test_edges/zurich_city_13_a')
    with pytest.raises(MissingDataError, match='empty'):
        DSECEventDataset(data_root=dsec_root, split='test')
