"""The command lines in the CLIs' docstrings, which ``--help`` prints, stay copyable."""
import ast
import glob
import os.path as osp

import pytest

from _helpers import REPO_ROOT

CLIS = sorted(glob.glob(osp.join(REPO_ROOT, 'tools', '*.py'))
              + glob.glob(osp.join(REPO_ROOT, 'data_converters', '*.py')))


def indent(line: str) -> int:
    return len(line) - len(line.lstrip())


@pytest.mark.parametrize('path', CLIS, ids=lambda p: osp.relpath(p, REPO_ROOT))
def test_shell_continuations_survive_in_help(path):
    """A lone backslash before a newline in a docstring joins the two lines, so ``--help``
    printed a command whose second half sat on the first line after a run of spaces. Every
    command line followed by a deeper-indented line must end with the shell's ``\\``."""
    with open(path) as f:
        doc = ast.get_docstring(ast.parse(f.read()), clean=False) or ''
    lines = doc.splitlines()
    command_indent = None  # of the command's first line, while in a command
    for line, following in zip(lines, lines[1:] + ['']):
        if line.lstrip().startswith('python '):
            command_indent = indent(line)
        if command_indent is None:
            continue
        assert '    --' not in line.strip(), f'{osp.basename(path)}: {line.strip()}'
        continued = bool(following.strip()) and indent(following) > command_indent
        assert line.rstrip().endswith('\\') == continued, (
            f'{osp.basename(path)}: {line.strip()}')
        if not continued:
            command_indent = None
