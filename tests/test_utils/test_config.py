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


DIGITS = osp.join(ROOT, 'configs', 'xformer_yolov3_digits.py')


def test_misspelt_cfg_option_is_refused_with_a_suggestion():
    with pytest.raises(ValueError, match=r"'modle' \(did you mean 'model'\?\) is not a key"):
        load_config(DIGITS, {'modle.backbone.arch': 'xxsmall'})


def test_cfg_options_of_the_config_and_the_runner_are_merged():
    cfg = load_config(DIGITS, {
        'model.backbone.arch': 'xxsmall',
        'experiment_name': 'x',
        'sync_bn': 'torch'
    })
    assert cfg.model.backbone.arch == 'xxsmall' and cfg.experiment_name == 'x'
    assert cfg.sync_bn == 'torch'


def test_syntax_error_in_a_base_config_names_the_file(tmp_path):
    base = tmp_path / 'base.py'
    base.write_text("default_scope = 'mmdet'\nmodel = dict(\n")
    (tmp_path / 'top.py').write_text("_base_ = ['./base.py']\nwork_dir = 'w'\n")
    with pytest.raises(SyntaxError, match=rf'{base}, line 2: .*never closed') as error:
        load_config(str(tmp_path / 'top.py'))
    assert (error.value.filename, error.value.lineno) == (str(base), 2)


@pytest.mark.needs('mmpretrain')
def test_the_top_level_preprocessor_goes_into_the_model():
    from mmxformer.utils.config import build_model, with_model_preprocessor
    cfg = load_config(osp.join(ROOT, 'configs/xformer-xxs_digits.py'))
    assert 'data_preprocessor' not in cfg.model  # mmpretrain's runner moves it there
    moved = with_model_preprocessor(cfg)
    assert moved.model.data_preprocessor == cfg.data_preprocessor
    assert 'data_preprocessor' not in cfg.model  # a copy
    assert with_model_preprocessor(moved) is moved
    mean = build_model(moved).data_preprocessor.mean.flatten().tolist()
    assert mean == pytest.approx(cfg.data_preprocessor.mean)
