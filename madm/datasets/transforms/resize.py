"""MADM's test-time resize: image and label squashed to one fixed size (method.md §8.4)."""
import mmcv
from mmcv.transforms import BaseTransform
from mmseg.registry import TRANSFORMS


@TRANSFORMS.register_module()
class ReferenceEvalResize(BaseTransform):
    """Resize image (bilinear) and label (nearest) to ``scale`` and score there.

    The reference evaluates on labels resized to 512x512, squashing DSEC and FMB
    to a square (method.md §8.4, §11 item 10). mmseg resizes predictions back to
    ``ori_shape``, so this transform also sets ``ori_shape`` to the resized shape;
    the metric then compares 512x512 prediction and 512x512 label, as the
    reference does. Use it after the label is loaded. For native-resolution
    scoring use mmseg's ``Resize(scale, keep_ratio=False)`` *before* loading the
    label instead.

    Required Keys:

    - img
    - gt_seg_map (optional)

    Modified Keys:

    - img
    - gt_seg_map
    - img_shape
    - ori_shape

    Added Keys:

    - scale_factor
    - keep_ratio

    Args:
        scale (tuple[int, int]): Output ``(W, H)``. Defaults to (512, 512).
        backend (str): ``'pillow'`` resizes as the reference does (PIL, whose
            bilinear filter widens when it shrinks; its nearest picks the pixel
            under each output pixel's centre) or ``'cv2'`` (OpenCV, mmcv's default).
            The two differ on thin structures such as event edges. Defaults to
            ``'pillow'``.
    """

    def __init__(self, scale: tuple[int, int] = (512, 512), backend: str = 'pillow') -> None:
        if backend not in ('pillow', 'cv2'):
            raise ValueError(f"backend must be 'pillow' or 'cv2', got {backend!r}")
        self.scale = tuple(scale)
        self.backend = backend

    def transform(self, results: dict) -> dict:
        img = results['img']
        h, w = img.shape[:2]
        results['img'] = mmcv.imresize(img, self.scale, interpolation='bilinear',
                                       backend=self.backend)
        for key in results.get('seg_fields', ['gt_seg_map']):
            if results.get(key) is not None:
                results[key] = mmcv.imresize(results[key], self.scale, interpolation='nearest',
                                             backend=self.backend)
        new_hw = results['img'].shape[:2]
        results['img_shape'] = new_hw
        results['ori_shape'] = new_hw
        results['scale_factor'] = (new_hw[1] / w, new_hw[0] / h)
        results['keep_ratio'] = False
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(scale={self.scale}, backend={self.backend!r})'

