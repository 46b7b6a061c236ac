"""Crash-safe file writes for converters: write to a temporary file, then rename.

A converter interrupted half-way, or a machine losing power, leaves either the old
file or the complete new one under the final name, never a truncated or empty
file, so re-running it can skip every output that exists. Outputs get the mode a
plain ``open(path, 'w')`` would give them (``0o666`` less the umask).
"""
import contextlib
import json
import os
import os.path as osp
import secrets
from collections.abc import Iterator, Sequence
from typing import Any

import cv2
import numpy as np

#: Prefix of the temporary files; the leading dot hides them from the split listings
#: (madm.datasets.splits) should a killed process leave one behind.
TMP_PREFIX = '.tmp-'


def _create_temp(directory: str, suffix: str) -> tuple[int, str]:
    """Create a new, empty ``.tmp-<hex><suffix>`` in ``directory``; return its fd and path.

    Not ``tempfile.mkstemp``: it creates the file ``0o600`` and ``os.replace`` keeps that
    mode. ``0o666`` here lets the umask decide, as for any file, without touching the
    process-wide umask (converters write from a thread).
    """
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, 'O_BINARY', 0)
    for _ in range(100):
        tmp = osp.join(directory, f'{TMP_PREFIX}{secrets.token_hex(8)}{suffix}')
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f'Could not create a temporary file in {directory!r}: 100 random '
                          f'{TMP_PREFIX}*{suffix} names were all taken.')


def _fsync_dir(directory: str) -> None:
    """Make a rename in ``directory`` durable; skipped where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # Windows: no directory handles through os.open
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems (and Windows) refuse fsync on a directory
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _atomic_temp(path: str) -> Iterator[tuple[int, str]]:
    """Yield ``(fd, tmp)``, a new file beside ``path``; make it ``path`` on success.

    On success the data are flushed to disk (``fsync``) *before* the rename: without it a
    power loss can leave the new name pointing at an empty file, which a resumed run
    would skip as done. The directory is synced after the rename.
    """
    directory = osp.dirname(osp.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = _create_temp(directory, osp.splitext(path)[1])
    try:
        try:
            yield fd, tmp
            os.fsync(fd)  # per file, not per descriptor: covers writes made through ``tmp``
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    _fsync_dir(directory)


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    The temporary file (``.tmp-<hex><ext>``, already created and empty) keeps ``path``'s
    extension so that writers which pick the format from the suffix (OpenCV, h5py, numpy)
    work; they must write to it in place (truncate, not delete and re-create). Its data
    reach the disk before the rename. On any exception the temporary file is removed and
    ``path`` is left untouched.
    """
    with _atomic_temp(path) as (_, tmp):
        yield tmp


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with _atomic_temp(path) as (fd, _), open(fd, 'wb', closefd=False) as f:
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
