"""Decoding of dataset PNGs and their 3-channel modality encodings (method.md §8.2).

Shared by the loading transforms and the data converters, so that a converted file
and an on-the-fly encoding are bit-identical. Every decoding error names the file.
"""
import io
from typing import Literal

import cv2
import numpy as np
from mmengine import fileio
from PIL import Image

ModalityEncoding = Literal['replicate', 'inverse_depth', 'colormap', 'clahe']
LabelChannel = Literal['gray', 'red']

# CARLA's LogarithmicDepth converter, which DELIVER's 8-bit depth PNGs appear to use
# (data-formats.md §3.2, inferred): v/255 = 1 + ln(d / 1000 m) / ln(300).
_CARLA_LOG_DEPTH_RANGE = np.log(300.0)
_CARLA_FAR_M = 1000.0


class CorruptedImageError(ValueError):
    """A dataset image cannot be decoded (truncated, not a PNG, empty)."""


def read_image_array(path: str, backend_args: dict | None = None) -> np.ndarray:
    """Decode an image file into an array in the file's own channel order.

    Args:
        path (str): Image path (any mmengine file backend).
        backend_args (dict | None): mmengine file backend arguments.

    Returns:
        np.ndarray: ``(H, W)`` for gray/palette/16-bit files, ``(H, W, 3)`` RGB or
        ``(H, W, 4)`` RGBA. Palette (``P``) images give their indices, which is
        what a palette-coded label stores.
    """
    data = fileio.get(path, backend_args=backend_args)
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()  # forces the full decode, so truncation is caught here
            if im.mode in ('I;16', 'I;16B', 'I;16L'):
                return np.asarray(im, dtype=np.uint16)
            if im.mode not in ('L', 'P', 'RGB', 'RGBA', 'I'):
                im = im.convert('RGBA' if 'A' in im.mode else 'RGB')
            return np.array(im)
    except (OSError, SyntaxError, ValueError) as e:
        raise CorruptedImageError(
            f'Cannot decode image {path!r} ({len(data)} bytes): {e}. The file is '
            'truncated or corrupted; re-extract it from the dataset archive or delete it '
            'and re-run the converter that wrote it.') from e


def to_rgb(array: np.ndarray, path: str = '<array>') -> np.ndarray:
    """MADM's reference input encoding: gray -> replicated x3, RGBA -> RGB, RGB as is.

    Args:
        array (np.ndarray): ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)`` uint8.
        path (str): File name for error messages.

    Returns:
        np.ndarray: ``(H, W, 3)`` uint8 RGB.
    """
    if array.dtype != np.uint8:
        raise ValueError(
            f'{path!r} holds {array.dtype} values; the reference encoding needs 8-bit '
            "images (method.md §8.2). For metric depth use encoding='inverse_depth' or "
            "'colormap'.")
    if array.ndim == 2:
        return np.repeat(array[..., None], 3, axis=2)
    if array.ndim == 3 and array.shape[2] in (3, 4):
        return np.ascontiguousarray(array[..., :3])
    raise ValueError(f'{path!r} has shape {array.shape}; expected a gray, RGB or RGBA image.')


def to_gray(array: np.ndarray, path: str = '<array>') -> np.ndarray:
    """Return the single channel of a gray image stored as 1, 3 or 4 channels.

    Args:
        array (np.ndarray): ``(H, W)`` or ``(H, W, 3|4)`` with equal colour channels.
        path (str): File name for error messages.

    Returns:
        np.ndarray: ``(H, W)`` with the input dtype.
    """
    if array.ndim == 2:
        return array
    rgb = array[..., :3]
    if not (np.array_equal(rgb[..., 0], rgb[..., 1])
            and np.array_equal(rgb[..., 0], rgb[..., 2])):
        raise ValueError(f'{path!r} is a colour image; this encoding expects a gray '
                         "(single-valued) image. Use encoding='replicate' instead.")
    return np.ascontiguousarray(rgb[..., 0])


def normalized_inverse_depth(array: np.ndarray, path: str = '<array>') -> np.ndarray:
    """Per-image min-max normalised inverse depth (near = bright, MiDaS convention).

    8-bit images are read as CARLA log-depth (DELIVER's PNGs, data-formats.md §3.2);
    16-bit images as metric depth in any unit, with 0 marking invalid pixels.

    Args:
        array (np.ndarray): ``(H, W)`` or gray ``(H, W, 3|4)``, uint8 or uint16.
        path (str): File name for error messages.

    Returns:
        np.ndarray: ``(H, W)`` uint8; invalid pixels are 0.
    """
    gray = to_gray(array, path)
    if gray.dtype == np.uint8:
        depth = _CARLA_FAR_M * np.exp((gray.astype(np.float64) / 255.0 - 1.0)
                                      * _CARLA_LOG_DEPTH_RANGE)
        valid = np.ones(gray.shape, dtype=bool)
    else:
        depth = gray.astype(np.float64)
        valid = depth > 0
    inv = np.zeros(gray.shape, dtype=np.float64)
    inv[valid] = 1.0 / depth[valid]
    if not valid.any():
        return np.zeros(gray.shape, dtype=np.uint8)
    lo, hi = inv[valid].min(), inv[valid].max()
    scaled = (inv - lo) / (hi - lo) if hi > lo else np.zeros_like(inv)
    return np.where(valid, np.round(scaled * 255.0), 0).astype(np.uint8)


def encode_modality(array: np.ndarray, encoding: ModalityEncoding = 'replicate',
                    clahe_clip_limit: float = 2.0,
                    clahe_tile_grid_size: tuple[int, int] = (8, 8),
                    path: str = '<array>') -> np.ndarray:
    """Turn a decoded modality image into the 3-channel uint8 network input.

    Args:
        array (np.ndarray): Output of :func:`read_image_array`.
        encoding (str): ``'replicate'`` (reference, method.md §8.2: gray x3, RGBA
            -> RGB, RGB as is), ``'inverse_depth'`` (normalised inverse depth x3),
            ``'colormap'`` (Turbo colour map of the normalised inverse depth) or
            ``'clahe'`` (infrared: CLAHE on the gray image, then x3). Defaults to
            ``'replicate'``.
        clahe_clip_limit (float): OpenCV CLAHE clip limit. Defaults to 2.0.
        clahe_tile_grid_size (tuple[int, int]): CLAHE tile grid. Defaults to (8, 8).
        path (str): File name for error messages.

    Returns:
        np.ndarray: ``(H, W, 3)`` uint8 **RGB**.
    """
    if encoding == 'replicate':
        return to_rgb(array, path)
    if encoding == 'inverse_depth':
        return to_rgb(normalized_inverse_depth(array, path), path)
    if encoding == 'colormap':
        bgr = cv2.applyColorMap(normalized_inverse_depth(array, path), cv2.COLORMAP_TURBO)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if encoding == 'clahe':
        gray = to_gray(to_rgb(array, path), path)
        clahe = cv2.createCLAHE(clipLimit=clahe_clip_limit,
                                tileGridSize=tuple(clahe_tile_grid_size))
        return to_rgb(clahe.apply(gray), path)
    raise ValueError(f"Unknown encoding {encoding!r}; choose 'replicate', 'inverse_depth', "
                     "'colormap' or 'clahe'.")


def read_label_map(path: str, channel: LabelChannel = 'gray',
                   backend_args: dict | None = None) -> np.ndarray:
    """Read a label PNG as an ``(H, W)`` uint8 map of raw values.

    Args:
        path (str): Label path.
        channel (str): ``'gray'`` for single-channel (or equal-channel) labels;
            ``'red'`` to read the class id from the R channel of a colour PNG, as
            DELIVER stores it (a 2-D PNG is accepted too). Defaults to ``'gray'``.
        backend_args (dict | None): mmengine file backend arguments.

    Returns:
        np.ndarray: ``(H, W)`` uint8 raw label values.
    """
    array = read_image_array(path, backend_args)
    if array.dtype != np.uint8:
        raise ValueError(f'Label {path!r} holds {array.dtype} values; labels must be 8-bit '
                         '(class ids 0..254, 255 = ignore).')
    if array.ndim == 2:
        return array
    if channel == 'red':
        return np.ascontiguousarray(array[..., 0])
    try:
        return to_gray(array, path)
    except ValueError:
        raise ValueError(f"Label {path!r} is a colour PNG with differing channels; for "
                         "DELIVER-style labels (class id in R) use channel='red'.") from None
