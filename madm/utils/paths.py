"""Checks that turn a missing dataset or weight folder into one clear error."""
import os
import os.path as osp
from collections.abc import Iterable


class MissingDataError(FileNotFoundError):
    """A dataset or weight folder, or a file inside it, is missing.

    The message names what is missing and how to get it, so the user never sees a
    stack trace from deep inside a library instead.
    """


def require_dir(path: str | None, what: str, how_to_get: str) -> str:
    """Return ``path`` if it is an existing directory, else raise MissingDataError.

    Args:
        path (str | None): The directory to check.
        what (str): What the directory should hold, e.g. ``'Cityscapes root'``.
        how_to_get (str): One or two sentences on where to get it / which
            option or environment variable sets it.
    """
    if not path or not osp.isdir(path):
        raise MissingDataError(f'{what} not found: {path!r} is not a directory. {how_to_get}')
    return path


def require_files(root: str, rel_paths: Iterable[str], what: str, how_to_get: str) -> None:
    """Raise MissingDataError listing every path in ``rel_paths`` missing below ``root``."""
    require_dir(root, what, how_to_get)
    missing = [p for p in rel_paths if not osp.exists(osp.join(root, p))]
    if missing:
        raise MissingDataError(f'{what} at {root!r} is incomplete; missing: '
                               f'{", ".join(missing)}. {how_to_get}')


def is_hidden(name: str) -> bool:
    """Whether a file or folder name is hidden, hence never a dataset sample.

    A converter killed mid-write leaves ``.tmp-*`` files (:mod:`madm.utils.atomic_io`),
    and macOS archives leave ``._name`` resource forks.
    """
    return name.startswith('.')


def list_files(directory: str, suffix: str = '') -> list[str]:
    """Sorted names of the non-hidden files in ``directory`` ending with ``suffix``."""
    with os.scandir(directory) as it:
        return sorted(e.name for e in it
                      if not is_hidden(e.name) and e.name.endswith(suffix) and e.is_file())


def list_dirs(directory: str) -> list[str]:
    """Sorted names of the non-hidden sub-folders of ``directory``."""
    with os.scandir(directory) as it:
        return sorted(e.name for e in it if not is_hidden(e.name) and e.is_dir())
