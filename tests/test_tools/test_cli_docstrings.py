"""The command lines in the CLIs' docstrings, which ``--help`` prints, stay copyable."""
import ast
import glob
import os.path as osp

import pytest

from _helpers import REPO_ROOT

CLIS = sorted(glob.glob(osp.join(REPO_ROOT, 'tools', '*.py'))
              + glob.glob(osp.join(REPO_ROOT, 'data_converters', '*.py')))


@pytest.mark.parametrize('path', CLIS, ids=lambda p: osp.relpath(p, REPO_ROOT))
def test_shell_continuations_survive_in_help(path):
    """A lone backslash before a newline in a docstring joins the two lines, so ``--help``
    printed a command whose second half sat on the first line after a run of spaces."""
    with open(path) as f:
        doc = ast.get_docstring(ast.parse(f.read()), clean=False) or ''
    for line in doc.splitlines():
        if line.lstrip().startswith('python '):
            assert '        --' not in line, f'{osp.basename(path)}: {line.strip()}'
