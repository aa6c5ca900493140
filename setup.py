"""mmxformer: XFormer (Cross Feature Attention) for mmpretrain, mmdet and mmsegmentation."""
import os
import os.path as osp
import shutil
import sys
from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = osp.dirname(osp.abspath(__file__))
# What `mim` looks for in an installed package's `.mim/` folder (OpenMMLab's layout): the model
# index (`mim search`, `mim download`), the configs it lists and the tools (`mim train`).
MIM_FILES = ('model-index.yml', 'configs', 'tools')


def read_requirements(name):
    """The requirement lines of ``requirements/<name>.txt`` (comments and blank lines left out)."""
    with open(osp.join(HERE, 'requirements', f'{name}.txt')) as f:
        lines = (line.split('#', 1)[0].strip() for line in f)
        return [line for line in lines if line]


def read_version():
    scope = {}
    with open(osp.join(HERE, 'mmxformer', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


def link_mim_files():
    """An editable install: ``mmxformer/.mim/<name>`` links to the checkout's files, so that
    edits show through (OpenMMLab's ``add_mim_extension`` in develop mode)."""
    mim_dir = osp.join(HERE, 'mmxformer', '.mim')
    os.makedirs(mim_dir, exist_ok=True)
    for name in MIM_FILES:
        link = osp.join(mim_dir, name)
        if osp.islink(link) or osp.isfile(link):
            os.remove(link)
        elif osp.isdir(link):
            shutil.rmtree(link)
        os.symlink(osp.relpath(osp.join(HERE, name), mim_dir), link)


class BuildPyWithMim(build_py):
    """A wheel: copies of the MIM files go into the built package's ``.mim/`` (the checkout is
    left alone, so no stale copy there can shadow its configs)."""

    def run(self):
        super().run()
        if getattr(self, 'editable_mode', False):
            return
        mim_dir = osp.join(self.build_lib, 'mmxformer', '.mim')
        shutil.rmtree(mim_dir, ignore_errors=True)
        os.makedirs(mim_dir)
        for name in MIM_FILES:
            src = osp.join(HERE, name)
            if osp.isdir(src):
                shutil.copytree(
                    src,
                    osp.join(mim_dir, name),
                    ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
            else:
                shutil.copyfile(src, osp.join(mim_dir, name))


if {'develop', 'editable_wheel'} & set(sys.argv):
    link_mim_files()

setup(
    name='mmxformer',
    version=read_version(),
    description='XFormer: lightweight CNN-ViT with Cross Feature Attention, '
    'as an OpenMMLab plugin',
    long_description=open(osp.join(HERE, 'README.md')).read() if osp.exists(
        osp.join(HERE, 'README.md')) else '',
    long_description_content_type='text/markdown',
    license='Apache License 2.0',
    packages=find_packages(exclude=('tests', 'tests.*', 'configs', 'tools')),
    include_package_data=True,
    python_requires='>=3.8',
    # The oldest versions tested (the classic stack, requirements/classic.txt), and no upper
    # bounds: users with OpenMMLab's own CUDA wheels keep theirs (`pip install -e .`);
    # requirements/runtime.txt pins the newest stack tested.
    install_requires=['torch>=2.1', 'mmengine>=0.10.7', 'mmcv>=2.1.0'],
    extras_require={
        'det': ['mmdet>=3.3.0'],
        'seg': ['mmsegmentation>=1.2.2', 'ftfy', 'regex'],
        'cls': ['mmpretrain>=1.2.0'],
        'digits': ['scikit-learn', 'pycocotools', 'matplotlib'],
        'tests': ['pytest', 'onnx', 'onnxruntime', 'openmim==0.3.8'],
        'deploy': read_requirements('deploy'),
    },
    cmdclass={'build_py': BuildPyWithMim},
    zip_safe=False,
)
