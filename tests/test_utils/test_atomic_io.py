"""Atomic writes: normal file modes, data on disk before the rename, nothing left behind."""
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from madm.utils import atomic_io
from madm.utils.atomic_io import (atomic_path, atomic_write_bytes, atomic_write_image,
                                  atomic_write_json)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_outputs_get_the_mode_of_a_plain_open(tmp_path):
    plain = tmp_path / 'plain.txt'
    with open(plain, 'w'):
        pass
    atomic_write_bytes(str(tmp_path / 'a.bin'), b'x')
    atomic_write_json(str(tmp_path / 'a.json'), {'a': 1})
    atomic_write_image(str(tmp_path / 'a.png'), np.zeros((4, 5), np.uint8))
    with atomic_path(str(tmp_path / 'a.npy')) as tmp:
        np.save(tmp, np.arange(3))
    for name in ('a.bin', 'a.json', 'a.png', 'a.npy'):
        assert _mode(tmp_path / name) == _mode(plain), name


def test_mode_follows_the_umask_in_a_fresh_process(tmp_path):
    # a known umask, so the check cannot pass by chance (a 0o077 umask gives 0o600 anyway)
    code = ('import os; os.umask(0o022)\n'
            'from madm.utils.atomic_io import atomic_write_bytes\n'
            f'atomic_write_bytes({str(tmp_path / "out.bin")!r}, b"data")\n')
    subprocess.run([sys.executable, '-c', code], check=True)
    assert _mode(tmp_path / 'out.bin') == 0o644


def test_data_are_synced_before_the_rename(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        info = os.fstat(fd)
        calls.append(('fsync', info.st_ino, stat.S_ISDIR(info.st_mode), info.st_size))
        real_fsync(fd)

    def replace(src, dst):
        calls.append(('replace', os.stat(src).st_ino, False, None))
        real_replace(src, dst)

    monkeypatch.setattr(atomic_io.os, 'fsync', fsync)
    monkeypatch.setattr(atomic_io.os, 'replace', replace)
    out = tmp_path / 'frame.png'
    atomic_write_image(str(out), np.full((6, 7), 127, np.uint8))
    ino, size = os.stat(out).st_ino, os.stat(out).st_size
    # the file's complete data are synced, then it is renamed, then the directory is synced
    assert calls[:2] == [('fsync', ino, False, size), ('replace', ino, False, None)]
    assert [c[2] for c in calls[2:]] in ([], [True])

    calls.clear()
    with atomic_path(str(tmp_path / 'x.npy')) as tmp:  # written by path, not through the fd
        np.save(tmp, np.arange(100))
    assert calls[0][0] == 'fsync' and calls[0][3] == os.stat(tmp_path / 'x.npy').st_size
    assert calls[1][0] == 'replace'


def test_temp_names_are_hidden_keep_the_suffix_and_retry_on_collision(tmp_path, monkeypatch):
    taken = tmp_path / f'{atomic_io.TMP_PREFIX}aaaa.png'
    taken.write_bytes(b'left by a killed run')
    names = iter(['aaaa', 'bbbb'])
    monkeypatch.setattr(atomic_io.secrets, 'token_hex', lambda n: next(names))
    with atomic_path(str(tmp_path / 'out.png')) as tmp:
        assert os.path.basename(tmp) == f'{atomic_io.TMP_PREFIX}bbbb.png'
        assert os.path.isfile(tmp) and os.path.getsize(tmp) == 0
        with open(tmp, 'wb') as f:
            f.write(b'new')
    assert (tmp_path / 'out.png').read_bytes() == b'new'
    assert taken.read_bytes() == b'left by a killed run'  # never overwritten


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    out = tmp_path / 'out.bin'
    atomic_write_bytes(str(out), b'old')
    with pytest.raises(RuntimeError, match='boom'):
        with atomic_path(str(out)) as tmp:
            with open(tmp, 'wb') as f:
                f.write(b'half')
            raise RuntimeError('boom')
    assert out.read_bytes() == b'old'
    assert os.listdir(tmp_path) == ['out.bin']
