"""mmxformer: XFormer (Cross Feature Attention) for mmpretrain, mmdet and mmsegmentation."""
import os.path as osp

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def read_version():
    scope = {}
    with open(osp.join(HERE, 'mmxformer', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


setup(
    name='mmxformer',
    version=read_version(),
    description='XFormer: lightweight CNN-ViT with Cross Feature Attention, '
    'as an OpenMMLab plugin',
    long_description=open(osp.join(HERE, 'README.md')).read()
    if osp.exists(osp.join(HERE, 'README.md')) else '',
    long_description_content_type='text/markdown',
    license='Apache License 2.0',
    packages=find_packages(exclude=('tests', 'tests.*', 'configs', 'tools')),
    include_package_data=True,
    python_requires='>=3.8',
    # Loose on purpose: users with OpenMMLab's own CUDA wheels keep theirs
    # (`pip install -e .`); requirements/runtime.txt pins the tested stack.
    install_requires=['torch', 'mmengine>=0.10', 'mmcv>=2.0.0'],
    extras_require={
        'det': ['mmdet>=3.0'],
        'seg': ['mmsegmentation>=1.0', 'ftfy', 'regex'],
        'cls': ['mmpretrain>=1.0'],
        'digits': ['scikit-learn', 'pycocotools', 'matplotlib'],
        'tests': ['pytest', 'onnx', 'onnxruntime'],
    },
    zip_safe=False,
)
