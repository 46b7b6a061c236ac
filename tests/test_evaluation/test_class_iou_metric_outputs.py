"""ClassIoUMetric's ``output_dir``: one PNG per test image, none overwritten."""
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.registry import METRICS
from mmseg.structures import SegDataSample
from PIL import Image

from madm.evaluation import relative_image_name


def _sample(img_path: str, value: int, shape=(4, 6)) -> dict:
    sample = SegDataSample(metainfo=dict(img_path=img_path))
    sample.pred_sem_seg = PixelData(data=torch.full((1, *shape), value, dtype=torch.long))
    sample.gt_sem_seg = PixelData(data=torch.full((1, *shape), value, dtype=torch.long))
    return sample.to_dict()


def _metric(**kwargs):
    init_default_scope('mmseg')
    metric = METRICS.build(dict(type='ClassIoUMetric', **kwargs))
    metric.dataset_meta = dict(classes=('a', 'b', 'c'))
    return metric


def test_predictions_mirror_the_tree_below_data_root(tmp_path):
    """DSEC test frames are <seq>/<i:06d>.png: the same basename in every sequence."""
    root, out = str(tmp_path / 'data'), str(tmp_path / 'pred')
    metric = _metric(output_dir=out, data_root=root)
    paths = [osp.join(root, 'frames', seq, '000001.png') for seq in ('seq_a', 'seq_b')]
    metric.process({}, [_sample(paths[0], 1), _sample(paths[1], 2)])
    for seq, value in (('seq_a', 1), ('seq_b', 2)):
        mask = np.asarray(Image.open(osp.join(out, 'frames', seq, '000001.png')))
        assert mask.shape == (4, 6) and (mask == value).all()
    assert metric.evaluate(2)['mIoU'] == 100.0


def test_same_basename_without_data_root_is_an_error(tmp_path):
    """Without data_root the name is the basename; a second image of that name must not
    silently overwrite the first."""
    metric = _metric(output_dir=str(tmp_path / 'pred'))
    metric.process({}, [_sample('/x/seq_a/000001.png', 1)])
    with pytest.raises(ValueError, match='data_root'):
        metric.process({}, [_sample('/x/seq_b/000001.png', 2)])


def test_names_reset_between_evaluations(tmp_path):
    """Validation during training writes the same images again each round."""
    metric = _metric(output_dir=str(tmp_path / 'pred'))
    for _ in range(2):
        metric.process({}, [_sample('/x/seq_a/000001.png', 1)])
        metric.evaluate(1)


def test_relative_image_name():
    assert relative_image_name('/d/frames/s/000001.jpg', '/d') == osp.join('frames', 's', '000001')
    assert relative_image_name('/d/frames/s/000001.jpg', '/d/') == osp.join('frames', 's', '000001')
    assert relative_image_name('/elsewhere/000001.jpg', '/d') == '000001'
    assert relative_image_name('/elsewhere/000001.jpg', None) == '000001'
