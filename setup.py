"""Install madm: ``pip install -e .`` (see README.md for the pinned environment)."""
import os.path as osp
import re

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def read_requirements(name: str) -> list[str]:
    """Requirement lines of ``requirements/<name>.txt`` without comments or ``-r`` includes."""
    reqs = []
    with open(osp.join(HERE, 'requirements', name), encoding='utf-8') as f:
        for line in f:
            line = re.sub(r'\s+#.*', '', line).strip()
            if line and not line.startswith(('#', '-')):
                reqs.append(line)
    return reqs


def read_version() -> str:
    with open(osp.join(HERE, 'madm', 'version.py'), encoding='utf-8') as f:
        return re.search(r"__version__ = '([^']+)'", f.read()).group(1)


setup(
    name='madm',
    version=read_version(),
    description='Unsupervised modality adaptation with Stable Diffusion backbones, '
    'as an MMSegmentation 1.x plugin',
    long_description=open(osp.join(HERE, 'README.md'), encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.10',
    packages=find_packages(include=['madm', 'madm.*']),
    include_package_data=True,
    install_requires=read_requirements('runtime.txt'),
    extras_require={
        'tests': ['pytest==9.2.0'],
        'tonic': read_requirements('optional.txt'),
    },
    classifiers=[
        'Programming Language :: Python :: 3.11',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ],
)
