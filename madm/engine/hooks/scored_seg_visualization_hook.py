import os

import mmcv
import mmengine.fileio as fileio
import numpy as np
import torch
from mmseg.engine.hooks import SegVisualizationHook
from mmseg.registry import HOOKS
from mmseg.structures import SegDataSample

from madm.evaluation import relative_image_name


@HOOKS.register_module()
class ScoredSegVisualizationHook(SegVisualizationHook):
    """mmseg's ``SegVisualizationHook``, drawn on the image each prediction was scored on.

    mmseg's hook re-reads ``img_path`` at its size on disk. madm's test pipelines
    score elsewhere: ``ReferenceEvalResize`` squashes image, label and
    ``ori_shape`` to 512x512, ``LoadModalityImage(max_height=440)`` crops DSEC
    frames, and depth or infrared are encoded before the model sees them, so the
    mmseg hook draws on the wrong picture or fails (``IndexError: boolean index
    did not match``). This hook draws on the model's input image (the batch's
    ``inputs``, BGR as loaded by ``LoadImageFromFile`` and ``LoadModalityImage``),
    resized to the prediction's shape when they differ. Where the batch holds no
    per-image tensor (test-time augmentation), it reads ``img_path`` as mmseg does
    and resizes that.

    Each picture is named ``<mode>_<image path below data_root>`` with ``/``
    written as ``__``, since DSEC's frames share basenames across sequences.
    Arguments are those of ``SegVisualizationHook``; ``tools/test.py --show`` and
    ``--show-dir`` set ``draw``, ``show`` and ``wait_time`` as for mmseg's hook.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._data_root: str | None = None

    def before_val_epoch(self, runner) -> None:
        self._data_root = getattr(runner.val_dataloader.dataset, 'data_root', None)

    def before_test_epoch(self, runner) -> None:
        self._data_root = getattr(runner.test_dataloader.dataset, 'data_root', None)

    def _after_iter(self, runner, batch_idx: int, data_batch: dict | None,
                    outputs: list[SegDataSample], mode: str = 'val') -> None:
        if not self.draw or mode == 'train':
            return
        if not self.every_n_inner_iters(batch_idx, self.interval):
            return
        inputs = data_batch.get('inputs') if isinstance(data_batch, dict) else None
        if inputs is None or len(inputs) != len(outputs):
            inputs = [None] * len(outputs)
        # runner.iter would build the training loop, and its dataset, in a test-only run;
        # the message hub holds the iteration without building anything (0 when testing).
        step = runner.message_hub.get_info('iter', -1) + 1
        for output, image in zip(outputs, inputs):
            name = relative_image_name(output.img_path, self._data_root)
            self._visualizer.add_datasample(
                f'{mode}_{name.replace(os.sep, "__")}', self._scored_image(output, image),
                data_sample=output, show=self.show, wait_time=self.wait_time, step=step)

    def _scored_image(self, output: SegDataSample, image) -> np.ndarray:
        """The RGB image the prediction in ``output`` was scored on, at its shape."""
        if isinstance(image, torch.Tensor) and image.ndim == 3 and image.shape[0] == 3:
            height, width = output.get('img_shape', image.shape[1:])
            # Drop any padding the pipeline added; BGR (as loaded) to RGB.
            img = image[:, :height, :width].permute(1, 2, 0).flip(-1).cpu().numpy()
        else:
            img_bytes = fileio.get(output.img_path, backend_args=self.backend_args)
            img = mmcv.imfrombytes(img_bytes, channel_order='rgb')
        if 'pred_sem_seg' in output:
            shape = tuple(output.pred_sem_seg.shape)
        else:
            shape = tuple(output.ori_shape)
        if img.shape[:2] != shape:
            img = mmcv.imresize(img, shape[::-1], interpolation='bilinear')
        return np.ascontiguousarray(img)
