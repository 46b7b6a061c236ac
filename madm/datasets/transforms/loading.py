"""Loading transforms for modality images and label maps (method.md §8.2)."""
import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmseg.registry import TRANSFORMS

from .image_io import (LabelChannel, ModalityEncoding, encode_modality,
                       read_image_array, read_label_map)


@TRANSFORMS.register_module()
class LoadModalityImage(BaseTransform):
    """Load a depth / infrared / event (or RGB) PNG as a 3-channel uint8 image.

    The reference (method.md §8.2) feeds every modality like an RGB photo: a gray
    image is replicated to 3 channels, RGBA drops alpha, RGB is used as is
    (``encoding='replicate'``). The other encodings are optional departures.
    Unlike ``LoadImageFromFile``, a corrupted file raises an error naming it.

    Required Keys:

    - img_path

    Added Keys:

    - img (np.uint8, ``(H, W, 3)``, **BGR** like ``LoadImageFromFile``, so that
      ``SegDataPreProcessor(bgr_to_rgb=True)`` treats every branch alike)
    - img_shape
    - ori_shape

    Args:
        encoding (str): ``'replicate'`` (reference), ``'inverse_depth'``,
            ``'colormap'`` (depth) or ``'clahe'`` (infrared); see
            :func:`~madm.datasets.transforms.image_io.encode_modality`.
            Reference: replicate (method.md §8.2). Defaults to ``'replicate'``.
        max_height (int | None): Keep only the top ``max_height`` rows of taller
            images. DSEC event frames rendered at 640x480 need 440 to match the
            640x440 labels (data-formats.md §1.7). Defaults to None (no crop).
        clahe_clip_limit (float): CLAHE clip limit. Defaults to 2.0.
        clahe_tile_grid_size (tuple[int, int]): CLAHE tiles. Defaults to (8, 8).
        backend_args (dict | None): mmengine file backend arguments.
    """

    def __init__(self, encoding: ModalityEncoding = 'replicate', max_height: int | None = None,
                 clahe_clip_limit: float = 2.0,
                 clahe_tile_grid_size: tuple[int, int] = (8, 8),
                 backend_args: dict | None = None) -> None:
        if encoding not in ('replicate', 'inverse_depth', 'colormap', 'clahe'):
            raise ValueError(f"encoding must be 'replicate', 'inverse_depth', 'colormap' or "
                             f"'clahe', got {encoding!r}")
        self.encoding = encoding
        self.max_height = max_height
        self.clahe_clip_limit = clahe_clip_limit
        self.clahe_tile_grid_size = tuple(clahe_tile_grid_size)
        self.backend_args = backend_args

    def transform(self, results: dict) -> dict:
        path = results['img_path']
        array = read_image_array(path, self.backend_args)
        if self.max_height is not None:
            array = array[:self.max_height]
        rgb = encode_modality(array, self.encoding, self.clahe_clip_limit,
                              self.clahe_tile_grid_size, path=path)
        results['img'] = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        results['img_shape'] = rgb.shape[:2]
        results['ori_shape'] = rgb.shape[:2]
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(encoding={self.encoding!r}, '
                f'max_height={self.max_height})')


@TRANSFORMS.register_module()
class LoadLabelMap(BaseTransform):
    """Load a label PNG as raw uint8 values, without any class remapping.

    Remapping is :class:`MapLabels`' job, so mmseg's by-name ``label_map`` and
    ``reduce_zero_label`` are not applied here (the datasets set neither).
    A corrupted or 16-bit PNG raises an error naming the file.

    Required Keys:

    - seg_map_path

    Added Keys:

    - gt_seg_map (np.uint8, ``(H, W)``)
    - seg_fields (``'gt_seg_map'`` appended, so mmseg's ``Resize`` resizes it)

    Args:
        channel (str): ``'gray'`` or ``'red'`` (DELIVER: class id in the R channel,
            method.md §8.3). Defaults to ``'gray'``.
        max_height (int | None): Keep only the top rows of taller labels.
            Defaults to None.
        backend_args (dict | None): mmengine file backend arguments.
    """

    def __init__(self, channel: LabelChannel = 'gray', max_height: int | None = None,
                 backend_args: dict | None = None) -> None:
        if channel not in ('gray', 'red'):
            raise ValueError(f"channel must be 'gray' or 'red', got {channel!r}")
        self.channel = channel
        self.max_height = max_height
        self.backend_args = backend_args

    def transform(self, results: dict) -> dict:
        label = read_label_map(results['seg_map_path'], self.channel, self.backend_args)
        if self.max_height is not None:
            label = label[:self.max_height]
        results['gt_seg_map'] = np.ascontiguousarray(label)
        results.setdefault('seg_fields', [])
        if 'gt_seg_map' not in results['seg_fields']:
            results['seg_fields'].append('gt_seg_map')
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(channel={self.channel!r})'
