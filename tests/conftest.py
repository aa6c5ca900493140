import importlib
import importlib.util
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# Packages to treat as not installed (comma-separated), so that the suite's own skipping can be
# tested: tests/test_packaging/test_optional_toolboxes.py runs pytest with it.
for _name in filter(None, os.environ.get('MMXFORMER_TEST_HIDE', '').split(',')):
    sys.modules[_name] = None


def installed(package):
    """Whether ``package`` can be imported here."""
    try:
        importlib.import_module(package)
    except ImportError:
        return False
    return True


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'needs(*packages): skip unless these packages are '
        'installed (e.g. a toolbox: mmdet, mmseg, mmpretrain)')
    if not hasattr(config, 'workerinput'):  # pytest-xdist's controller, before its workers
        # importing mim creates ~/.cache/mim if it is missing, without exist_ok: on a fresh
        # machine two workers collecting test_mim.py raced (FileExistsError) and xdist stopped
        # the whole run; imported here first, once
        installed('mim')


def pytest_runtest_setup(item):
    for mark in item.iter_markers('needs'):
        missing = [package for package in mark.args if not installed(package)]
        if missing:
            pytest.skip(f'needs {", ".join(missing)}, not installed here')


def load_module(path):
    """Import a Python file by its path (a tool, or a test module whose helper another test uses:
    by path, since site-packages holds another ``tests`` package)."""
    name = '_' + osp.relpath(path, ROOT).replace(os.sep, '_').removesuffix('.py')
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='session')
def load_tool():
    """``load_tool('misc/make_digits.py')``: a tool of ``tools/``, imported by its path."""
    return lambda relpath: load_module(osp.join(ROOT, 'tools', relpath))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _restore_default_scope():
    """Building a toolbox's runner or model sets mmengine's global default scope; a test must not
    leave it to the next one."""
    from mmengine.registry import DefaultScope
    before = dict(DefaultScope._instance_dict)
    yield
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(before)


@pytest.fixture(scope='session')
def tiny_sets(tmp_path_factory):
    """Paths of a tiny det, seg and cls digits set, made once per session (do not modify them)."""
    from mmxformer.data.digits import make_digits_cls, make_digits_det, make_digits_seg
    tiny = dict(
        det=(make_digits_det, dict(num_train=6, num_val=3)),
        seg=(make_digits_seg, dict(num_train=4, num_val=2)),
        cls=(make_digits_cls, dict(num_train=20, num_test=10)),
    )
    root = tmp_path_factory.mktemp('digits')
    return {task: make(root / f'digits_{task}', **kwargs) for task, (make, kwargs) in tiny.items()}


@pytest.fixture
def copy_set(tiny_sets, tmp_path):
    """Copy a tiny set into ``tmp_path/digits_<task>`` to damage it."""

    def copy(task):
        return shutil.copytree(tiny_sets[task], tmp_path / f'digits_{task}')

    return copy


@pytest.fixture(scope='session')
def run_tool():
    """``run_tool('train.py', ARGS..., cwd=DIR)``: a tool of ``tools/`` in a subprocess of this
    Python; the finished process (its return code, stdout and stderr)."""

    def run(relpath, *args, cwd=ROOT, timeout=900, env=None):
        return subprocess.run(
            [sys.executable, osp.join(ROOT, 'tools', relpath), *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env)

    return run


def digits_options(task, root):
    """``--cfg-options`` (a dict) that point a digits config's train, val and test data at a set
    in ``root`` (one of :func:`tiny_sets`); the detection config's evaluators read the set's
    annotations."""
    root = str(root)
    if task == 'det':
        ann = f'{root}/annotations/instances_val2017.json'
        return {
            'train_dataloader.dataset.data_root': root,
            'val_dataloader.dataset.data_root': root,
            'test_dataloader.dataset.data_root': root,
            'val_evaluator.ann_file': ann,
            'test_evaluator.ann_file': ann
        }
    return {f'{split}_dataloader.dataset.data_root': root for split in ('train', 'val', 'test')}


#: The smallest XFormer with every kind of block (MV3 blocks in five stages, XF blocks of one
#: transformer layer in the last three; total stride 32): for the tests whose time grows with the
#: graph (exports, lowering to XNNPACK), not with the arch.
TINY_ARCH = dict(
    stem_channels=8,
    channels=[8, 8, 16, 16, 16],
    num_blocks=[1, 1, 1, 1, 1],
    strides=[1, 2, 2, 2, 2],
    embed_dims=[0, 0, 16, 16, 16],
    depths=[0, 0, 1, 1, 1],
    mlp_ratios=[0, 0, 2, 2, 2],
    expand_ratio=2,
    qkv_dims=16,
    num_heads=2,
    last_channels=32)


def randomise_batch_norms(model):
    """BN statistics and affine parameters far from the identity, so that folding them matters;
    returns ``model``."""
    from torch.nn.modules.batchnorm import _BatchNorm
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model
