"""Tiny digit sets, made once per test session; tests that damage a set work on a copy."""
import shutil

import pytest

from mmxformer.datasets import make_digits_cls, make_digits_det, make_digits_seg

TINY = dict(
    det=(make_digits_det, dict(num_train=6, num_val=3)),
    seg=(make_digits_seg, dict(num_train=4, num_val=2)),
    cls=(make_digits_cls, dict(num_train=20, num_test=10)),
)


@pytest.fixture(scope='session')
def tiny_sets(tmp_path_factory):
    """Paths of a tiny det, seg and cls set (do not modify them)."""
    root = tmp_path_factory.mktemp('digits')
    return {task: make(root / f'digits_{task}', **kwargs) for task, (make, kwargs) in TINY.items()}


@pytest.fixture
def copy_set(tiny_sets, tmp_path):
    """Copy a tiny set into ``tmp_path/digits_<task>`` to damage it."""

    def copy(task):
        return shutil.copytree(tiny_sets[task], tmp_path / f'digits_{task}')

    return copy
