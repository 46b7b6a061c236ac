"""ScoredSegVisualizationHook draws on the image as scored, under a unique name."""
import os.path as osp
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.registry import HOOKS
from mmseg.structures import SegDataSample
from mmseg.visualization import SegLocalVisualizer

from _helpers import REPO_ROOT
from madm.utils import atomic_write_image

DISK_HW, SCORED_HW = (40, 72), (64, 64)


class _Recorder:
    """Stands in for the visualizer: keeps what the hook asks it to draw."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, np.ndarray, dict]] = []

    def add_datasample(self, name, image, **kwargs) -> None:
        self.calls.append((name, image, kwargs))


def _sample(img_path: str) -> SegDataSample:
    sample = SegDataSample(metainfo=dict(img_path=img_path, img_shape=SCORED_HW,
                                         ori_shape=SCORED_HW))
    sample.pred_sem_seg = PixelData(data=torch.zeros((1, *SCORED_HW), dtype=torch.long))
    sample.gt_sem_seg = PixelData(data=torch.zeros((1, *SCORED_HW), dtype=torch.long))
    return sample


@pytest.fixture
def setup(tmp_path):
    """A hook, a runner with no training loop, and a 40x72 image on disk scored at 64x64."""
    init_default_scope('mmseg')
    SegLocalVisualizer.get_instance(f'vis_{tmp_path.name}')
    hook = HOOKS.build(dict(type='ScoredSegVisualizationHook', draw=True, interval=1))
    hook._visualizer = _Recorder()
    root = str(tmp_path / 'data')
    img_path = osp.join(root, 'frames', 'seq_a', '000001.png')
    atomic_write_image(img_path, np.full((*DISK_HW, 3), 7, np.uint8))
    # No `iter`: reading runner.iter in a test run would build the training loop.
    runner = SimpleNamespace(message_hub=MessageHub.get_instance(f'hub_{tmp_path.name}'),
                             test_dataloader=SimpleNamespace(dataset=SimpleNamespace(
                                 data_root=root)))
    hook.before_test_epoch(runner)
    return hook, runner, img_path


def test_draws_the_model_input_at_the_prediction_shape(setup):
    hook, runner, img_path = setup
    bgr = torch.zeros((3, *SCORED_HW), dtype=torch.uint8)
    bgr[0] = 200  # blue, as the loaders give BGR
    hook.after_test_iter(runner, 0, dict(inputs=[bgr]), [_sample(img_path)])
    (name, image, kwargs), = hook._visualizer.calls
    assert image.shape == (*SCORED_HW, 3)
    assert (image[..., 2] == 200).all() and (image[..., :2] == 0).all()  # RGB
    assert name == 'test_' + '__'.join(('frames', 'seq_a', '000001'))
    assert kwargs['step'] == 0


def test_without_input_tensor_reads_and_resizes_the_image(setup):
    hook, runner, img_path = setup
    hook.after_test_iter(runner, 0, dict(inputs=[[None]]), [_sample(img_path)])
    (_, image, _), = hook._visualizer.calls
    assert image.shape == (*SCORED_HW, 3) and (image == 7).all()


def test_draws_with_the_real_visualizer(setup, tmp_path):
    """mmseg's hook fails here with ``IndexError: boolean index did not match``."""
    hook, runner, img_path = setup
    hook._visualizer = SegLocalVisualizer.get_instance(
        f'vis_real_{tmp_path.name}', vis_backends=[dict(type='LocalVisBackend')],
        save_dir=str(tmp_path / 'show'))
    hook._visualizer.dataset_meta = dict(classes=('a', 'b'), palette=[[0, 0, 0], [255, 0, 0]])
    inputs = [torch.zeros((3, *SCORED_HW), dtype=torch.uint8)]
    hook.after_test_iter(runner, 0, dict(inputs=inputs), [_sample(img_path)])
    assert osp.isfile(osp.join(tmp_path, 'show', 'vis_data', 'vis_image',
                               'test_frames__seq_a__000001_0.png'))


def test_default_runtime_uses_the_hook():
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', '_base_', 'default_runtime.py'))
    assert cfg.default_hooks.visualization.type == 'ScoredSegVisualizationHook'
