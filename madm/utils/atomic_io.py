"""Crash-safe file writes for converters: write to a temporary file, then rename.

A converter interrupted half-way leaves either the old file or the complete new
one, never a truncated file, so re-running it can skip every output that exists.
"""
import contextlib
import json
import os
import os.path as osp
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

import cv2
import numpy as np


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    The temporary file keeps ``path``'s extension so that writers which pick the
    format from the suffix (OpenCV, h5py, numpy) work. On any exception the
    temporary file is removed and ``path`` is left untouched.
    """
    directory = osp.dirname(osp.abspath(path))
    os.makedirs(directory, exist_ok=True)
    suffix = osp.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix='.tmp-', suffix=suffix, dir=directory)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, 'wb') as f:
        f.write(data)


def atomic_write_text(path: str, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode('utf-8'))


def atomic_write_json(path: str, obj: Any, indent: int | None = 2) -> None:
    """Dump ``obj`` as JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=indent))


def atomic_write_image(path: str, image: np.ndarray, params: Sequence[int] = ()) -> None:
    """Write an image atomically with OpenCV.

    Args:
        path (str): Output path; the extension picks the format (``.png``...).
        image (np.ndarray): ``(H, W)`` gray/label map or ``(H, W, 3)`` image in
            **RGB** order (converted to OpenCV's BGR here), uint8 or uint16.
        params (Sequence[int]): ``cv2.imencode`` flags as (key, value) pairs, e.g.
            ``(cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE)``. Defaults to
            OpenCV's settings.
    """
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ext = osp.splitext(path)[1]
    ok, buf = cv2.imencode(ext, image, list(params))
    if not ok:
        raise OSError(f'OpenCV could not encode an image of shape {image.shape} '
                      f'and dtype {image.dtype} as {ext!r} for {path}')
    atomic_write_bytes(path, buf.tobytes())
