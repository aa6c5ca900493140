"""Configs given to the tools as a path or, as in ``_base_``, as ``package::name``."""
import os.path as osp
import re

import pytest

from mmxformer.utils.config import ConfigError, load_config

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


@pytest.mark.parametrize('key, message', [
    ('model.backbone.arhc', r"model.backbone \(XFormer\) has no argument 'arhc' \(did you mean "
     r"'arch'\?\)"),
    ('train_cfg.max_epoch', r"train_cfg \(EpochBasedTrainLoop\) has no argument 'max_epoch' "
     r"\(did you mean 'max_epochs'"),
    ('default_hooks.checkpoint.max_keep_ckpt', r"\(CheckpointHook\) has no argument "
     r"'max_keep_ckpt' \(did you mean 'max_keep_ckpts'"),
    ('train_dataloader.batch_szie', r"\(DataLoader\) has no argument 'batch_szie'"),
    ('train_dataloader.dataset.pipeline.2.scal', r"pipeline.2 \(Resize\) has no "
     r"argument 'scal' \(did you mean 'scale'"),
    ('model.test_cfg.scor_thr', r"model.test_cfg has no key 'scor_thr' \(did you mean "
     r"'score_thr'"),
    ('randomness.sed', r"randomness \(set_randomness\) has no argument 'sed'"),
    ('param_scheduler.2.end', r'param_scheduler is a list of 2; its items are param_scheduler.0 '
     r'to param_scheduler.1'),
    ('param_scheduler.end', r'param_scheduler is a list of 2'),
    ('model.backbone.arch.depth', r"model.backbone.arch is 'small', not a dict"),
])
def test_misspelt_nested_cfg_option_is_refused(key, message):
    with pytest.raises(ConfigError, match=rf"^--cfg-options: '{re.escape(key)}': .*{message}"):
        load_config(DIGITS, {key: 1})


def test_nested_options_that_the_config_may_gain_are_merged():
    options = {
        'model.backbone.init_cfg.type': 'Pretrained',  # arguments of the dict's type
        'model.backbone.init_cfg.checkpoint': 'x.pth',
        'model.neck.type': 'YOLOV3Neck',  # a type set along with its arguments
        'model.neck.num_scales': 3,
        'train_dataloader.num_batch_per_epoch': 2,  # taken by mmengine's build_dataloader
        'optim_wrapper.paramwise_cfg.norm_decay_mult': 0.,  # by its build_optim_wrapper
        'default_hooks.checkpoint.save_optimizer': False,  # CheckpointHook's **kwargs
        'model.test_cfg.with_nms': True,  # in a dict without a type, no near miss of a key
        'randomness.seed': 0,  # the runner's, not in the config
        'env_cfg.dist_cfg.backend': 'gloo',
        'param_scheduler.1.end': 2,
    }
    cfg = load_config(DIGITS, options)
    assert cfg.model.backbone.init_cfg == dict(type='Pretrained', checkpoint='x.pth')
    assert cfg.param_scheduler[1].end == 2 and cfg.randomness == dict(seed=0)


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


def test_variables_that_the_runner_does_not_read_are_refused_for_it():
    option = {'train_pipeline.2.scale': (64, 64)}  # the pipeline was copied into the loader
    with pytest.raises(
            ConfigError,
            match=r"'train_pipeline.2.scale': the runner does not read "
            r'train_pipeline, .* so the option would change nothing; its value went to '
            r'train_dataloader.dataset.pipeline.2.scale: set those'):
        load_config(DIGITS, option, runner=True)
    assert load_config(DIGITS, option).train_pipeline[2].scale == (64, 64)  # other tools' own
