"""Configs given to the tools as a path or, as in ``_base_``, as ``package::name``."""
import os.path as osp

import pytest

from mmxformer.utils.config import load_config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_config_shipped_with_a_toolbox():
    cfg = load_config('mmpretrain::mobilevit/mobilevit-small_8xb128_in1k.py')
    assert cfg.model.backbone.type == 'MobileViT'
    assert cfg.work_dir == osp.join('work_dirs', 'mobilevit-small_8xb128_in1k')


def test_config_given_as_a_path():
    cfg = load_config(osp.join(ROOT, 'configs', 'xformer-s_8xb128_in1k.py'), work_dir='wd')
    assert cfg.model.backbone.type == 'XFormer' and cfg.work_dir == 'wd'


@pytest.mark.parametrize('path, message', [
    ('configs/no_such_config.py', 'does not exist'),
    ('mmnothing::x.py', "package 'mmnothing' is not installed"),
    ('mmdet::yolo/no_such_config.py', 'mmdet ships no yolo/no_such_config.py'),
])
def test_missing_config_is_named(path, message):
    with pytest.raises(FileNotFoundError, match=message):
        load_config(path)
