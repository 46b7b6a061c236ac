"""Class sets and label look-up tables against method.md §8.3."""
import numpy as np
import pytest

from madm.datasets.class_maps import (CLASSES_9, CLASSES_11, TASK_CLASSES, build_label_lut,
                                      label_domain, out_of_domain_values, task_metainfo)


def test_task_class_sets():
    assert TASK_CLASSES['depth'] is TASK_CLASSES['event'] is CLASSES_11
    assert len(CLASSES_11.classes) == len(CLASSES_11.palette) == 11
    assert len(CLASSES_9.classes) == len(CLASSES_9.palette) == 9
    assert CLASSES_11.classes[5] == 'road' and CLASSES_11.palette[5] == (128, 64, 128)
    # The "traffic sign" colour is Cityscapes' traffic-light colour (method.md §11.11).
    assert CLASSES_11.palette[10] == CLASSES_9.palette[8] == (250, 170, 30)
    assert CLASSES_9.classes[7] == 'car'


@pytest.mark.parametrize('name,raw,expected', [
    ('cityscapes_to_11', 9, 7),     # terrain -> vegetation
    ('cityscapes_to_11', 12, 3),    # rider -> person
    ('cityscapes_to_11', 6, 10),    # traffic light -> traffic sign
    ('cityscapes_to_11', 18, 8),    # bicycle -> car
    ('cityscapes_to_11', 10, 0),    # sky
    ('cityscapes_to_11', 3, 9),     # wall
    ('cityscapes_to_9', 3, 255),    # wall -> ignore for infrared
    ('cityscapes_to_9', 4, 255),    # fence -> ignore
    ('cityscapes_to_9', 9, 6),      # terrain -> vegetation
    ('cityscapes_to_9', 0, 4),      # road
    ('deliver_raw_to_11', 0, 255),  # unlabeled
    ('deliver_raw_to_11', 6, 5),    # raw 6 = RoadLine (5) + 1 -> road
    ('deliver_raw_to_11', 7, 5),    # raw 7 = Road (6) + 1 -> road
    ('deliver_raw_to_11', 13, 0),   # Sky (12) -> sky
    ('deliver_raw_to_11', 3, 255),  # Other (2) -> ignore
    ('deliver_raw_to_11', 18, 10),  # TrafficLight (17) -> traffic sign
    ('deliver_raw_to_11', 22, 7),   # Terrain (21) -> vegetation
    ('deliver_raw_to_11', 25, 8),   # Truck (24) -> car
    ('fmb_to_9', 14, 3),            # pole
    ('fmb_to_9', 0, 255),           # unlabeled
    ('fmb_to_9', 4, 8),             # traffic lamp -> traffic sign
    ('fmb_to_9', 7, 0),             # sky
    ('cityscapes_labelid_to_trainid', 7, 0),
    ('cityscapes_labelid_to_trainid', 33, 18),
    ('cityscapes_labelid_to_trainid', 6, 255),
])
def test_lut_values(name, raw, expected):
    lut = build_label_lut(name)
    assert lut.shape == (256,) and lut.dtype == np.uint8
    assert lut[raw] == expected
    assert lut[255] == 255


def test_domain_and_out_of_range():
    domain = label_domain('deliver_raw_to_11')
    assert domain[:26].all() and domain[255] and not domain[26:255].any()
    label = np.array([[0, 14], [15, 255]], np.uint8)
    assert out_of_domain_values(label, 'fmb_to_9') == [15]
    assert out_of_domain_values(label, 'deliver_raw_to_11') == []


def test_unknown_mapping_name():
    with pytest.raises(KeyError, match='cityscapes_to_11'):
        build_label_lut('cityscapes_to_12')


def test_metainfo_override_that_would_drop_classes_is_refused():
    assert task_metainfo('infrared')['classes'] == CLASSES_9.classes
    with pytest.raises(ValueError, match='MapLabels'):
        task_metainfo('depth', dict(classes=('road', 'sky')))
    with pytest.raises(ValueError, match='task'):
        task_metainfo('rgb')
