"""The classification configs: the ImageNet recipe, the model sizes, the variants, and a digits
run of tools/train.py then tools/test.py."""
import glob
import json
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config

from mmxformer.data.digits import make_digits_cls
from mmxformer.models import MultiheadSelfAttention
from mmxformer.utils.config import build_model

pytestmark = pytest.mark.needs('mmpretrain')

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = osp.join(ROOT, 'configs')
IN1K_S = osp.join(CONFIGS, 'xformer-s_8xb128_in1k.py')
DIGITS = osp.join(CONFIGS, 'xformer-xxs_digits.py')


def load(name):
    return Config.fromfile(osp.join(CONFIGS, name))


def num_params(model):
    return sum(param.numel() for param in model.parameters())


def test_imagenet_config_follows_the_mobilevit_recipe():
    cfg = Config.fromfile(IN1K_S)
    crop = cfg.train_dataloader.dataset.pipeline[1]
    assert (crop.type, crop.scale) == ('RandomResizedCrop', 256)
    assert cfg.train_dataloader.dataset.pipeline[2].type == 'RandomFlip'
    assert cfg.test_dataloader.dataset.pipeline[2] == dict(type='CenterCrop', crop_size=256)
    assert cfg.train_cfg.max_epochs == 300
    assert cfg.train_dataloader.batch_size * 8 == cfg.auto_scale_lr.base_batch_size == 1024
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    assert cfg.optim_wrapper.optimizer.weight_decay == 0.01
    assert [s.type for s in cfg.param_scheduler] == ['LinearLR', 'CosineAnnealingLR']
    assert cfg.model.head.loss.label_smooth_val == 0.1
    assert [hook.type for hook in cfg.custom_hooks] == ['EMAHook']


def test_xformer_s_classifier_has_the_papers_5_5m_parameters():
    model = build_model(Config.fromfile(IN1K_S))
    params = num_params(model)
    print(f'XFormer-S classifier, 1000 classes: {params / 1e6:.3f} M parameters')
    assert abs(params - 5.5e6) <= 0.02 * 5.5e6
    logits = model(torch.rand(1, 3, 256, 256), mode='tensor')
    assert logits.shape == (1, 1000)


@pytest.mark.parametrize('name, size, classes', [
    ('xformer-xs_8xb128_in1k.py', 256, 1000),
    ('xformer-xxs_8xb128_in1k.py', 256, 1000),
    ('xformer-s-sa_8xb128_in1k.py', 256, 1000),
    ('xformer-xxs_digits.py', 32, 10),
    ('xformer-xxs-sa_digits.py', 32, 10),
])
def test_variants_build_and_run(name, size, classes):
    model = build_model(load(name))
    assert model(torch.rand(2, 3, size, size), mode='tensor').shape == (2, classes)
    has_sa = any(isinstance(m, MultiheadSelfAttention) for m in model.modules())
    assert has_sa == ('-sa_' in name)


def test_sa_variants_differ_from_their_base_only_in_the_attention():
    for base, sa in (('xformer-s_8xb128_in1k.py', 'xformer-s-sa_8xb128_in1k.py'),
                     ('xformer-xxs_digits.py', 'xformer-xxs-sa_digits.py')):
        base_cfg, sa_cfg = load(base).to_dict(), load(sa).to_dict()
        assert sa_cfg['model']['backbone'].pop('attn_cfg') == dict(type='MultiheadSelfAttention')
        base_cfg['model']['backbone'].pop('attn_cfg')
        assert sa_cfg['model'] == base_cfg['model']
        for key in ('train_dataloader', 'test_dataloader', 'optim_wrapper', 'param_scheduler'):
            assert sa_cfg[key] == base_cfg[key]


def test_digits_config_validates_on_the_test_split():
    cfg = Config.fromfile(DIGITS)
    assert cfg.train_dataloader.dataset.data_prefix == 'train'
    for loader in (cfg.val_dataloader, cfg.test_dataloader):
        assert loader.dataset.data_prefix == 'test'
        assert loader.dataset.data_root == cfg.train_dataloader.dataset.data_root


def run_ok(run_tool, *args):
    result = run_tool(*args, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_train_then_test_on_a_tiny_digits_set(run_tool, tmp_path):
    data = make_digits_cls(tmp_path / 'digits_cls', num_train=32, num_test=20)
    options = [
        '--cfg-options', f'train_dataloader.dataset.data_root={data}',
        f'val_dataloader.dataset.data_root={data}', f'test_dataloader.dataset.data_root={data}',
        'train_dataloader.batch_size=16', 'train_cfg.max_epochs=2'
    ]
    work_dir = tmp_path / 'work'
    run_ok(run_tool, 'train.py', DIGITS, '--work-dir', str(work_dir), *options)
    checkpoint = (work_dir / 'last_checkpoint').read_text().strip()
    assert osp.basename(checkpoint) == 'epoch_2.pth'
    out = run_ok(run_tool, 'test.py', DIGITS, checkpoint, '--work-dir', str(work_dir), *options)
    top1 = re.search(r"'accuracy/top1': ([0-9.]+)", out)
    assert top1, out[-2000:]
    # the same weights (EMA: the checkpoint holds them) on the same split as the last validation
    scalars = [
        json.loads(line)
        for line in open(glob.glob(str(work_dir / '*' / 'vis_data' / 'scalars.json'))[0])
    ]
    validated = [s['accuracy/top1'] for s in scalars if 'accuracy/top1' in s]
    assert len(validated) == 2 and float(top1.group(1)) == pytest.approx(validated[-1], abs=1e-2)
