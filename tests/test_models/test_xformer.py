import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from mmxformer.models import MultiheadSelfAttention, XFormer

STRIDES = (2, 4, 8, 16, 32, 32)


def ceil_div(size, stride):
    return -(-size // stride)


@pytest.mark.parametrize('arch,size', [('small', (256, 256)), ('small', (320, 320)),
                                       ('small', (257, 383)), ('small', (33, 47)),
                                       ('xsmall', (257, 383)), ('xxsmall', (256, 256))])
def test_output_shapes(arch, size):
    model = XFormer(arch, out_indices=range(6)).eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, *size))
    assert len(outs) == 6
    for out, channels, stride in zip(outs, model.out_channels, STRIDES):
        assert out.shape == (1, channels, ceil_div(size[0], stride), ceil_div(size[1], stride))
    assert model.out_channels == (*XFormer.arch_settings[arch]['channels'],
                                  XFormer.arch_settings[arch]['last_channels'])


def test_out_indices_int_negative_and_order():
    model = XFormer(out_indices=(-2, 2, 3))
    assert model.out_indices == (2, 3, 4)
    assert model.out_channels == (96, 128, 160)
    assert XFormer(out_indices=5).out_channels == (640, )
    # stages after the last requested output are not built
    assert len(XFormer(out_indices=(2, 3, 4)).stages) == 5


def test_classifier_parameters_match_the_paper():
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        classifier = MODELS.build(
            dict(
                type='ImageClassifier',
                backbone=dict(type='XFormer', arch='small'),
                neck=dict(type='GlobalAveragePooling'),
                head=dict(type='LinearClsHead', num_classes=1000, in_channels=640)))
    params = sum(p.numel() for p in classifier.parameters())
    print(f'XFormer-S classifier, 1000 classes: {params / 1e6:.3f} M parameters (paper 5.5 M)')
    assert abs(params / 5.5e6 - 1) < 0.02
    out = classifier(torch.rand(2, 3, 256, 256), mode='tensor')
    assert out.shape == (2, 1000)


def test_self_attention_variant():
    model = XFormer(attn_cfg=dict(type='MultiheadSelfAttention'), out_indices=(2, 3, 4))
    attns = [m for m in model.modules() if isinstance(m, MultiheadSelfAttention)]
    assert len(attns) == 2 + 4 + 3
    outs = model.eval()(torch.rand(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [96, 128, 160]


def test_gradients_reach_every_trainable_parameter():
    model = XFormer('xxsmall', out_indices=range(6), drop_path_rate=0.1).train()
    sum(o.mean() for o in model(torch.rand(2, 3, 64, 96))).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing


@pytest.mark.parametrize('frozen_stages', [0, 2, 6])
def test_frozen_stages(frozen_stages):
    model = XFormer('xxsmall', out_indices=range(6), frozen_stages=frozen_stages)
    model.train()
    frozen = [model.stem, *model.stages[:frozen_stages]]
    trainable = model.stages[frozen_stages:]
    loss = sum(o.mean() for o in model(torch.rand(2, 3, 64, 64)))
    if trainable:
        loss.backward()
    for module in frozen:
        assert not module.training
        assert all(not p.requires_grad and p.grad is None for p in module.parameters())
    for module in trainable:
        assert module.training
        assert all(p.grad is not None for p in module.parameters())
    # train() re-applies the freezing after eval()
    model.eval().train()
    assert not model.stem.training and all(not p.requires_grad for p in model.stem.parameters())


def test_norm_eval_keeps_bn_statistics():
    model = XFormer('xxsmall', out_indices=(4, ), norm_eval=True).train()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and all(not bn.training for bn in bns)
    before = bns[0].running_mean.clone()
    model(torch.rand(2, 3, 64, 64))
    torch.testing.assert_close(bns[0].running_mean, before)
    assert model.train() is model


def test_with_cp_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = XFormer('xxsmall', out_indices=(3, 4))
    checkpointed = XFormer('xxsmall', out_indices=(3, 4), with_cp=True)
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 64, 64)
    for model in (plain, checkpointed):
        sum(o.square().mean() for o in model.train()(x)).backward()
    for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_norm_and_act_cfg_are_used():
    model = XFormer('xxsmall', norm_cfg=dict(type='GN', num_groups=8),
                    act_cfg=dict(type='ReLU'))
    types = {type(m).__name__ for m in model.modules()}
    assert 'GroupNorm' in types and 'ReLU' in types
    assert 'BatchNorm2d' not in types and 'SiLU' not in types


def test_custom_arch_dict():
    arch = dict(XFormer.arch_settings['xxsmall'], channels=[16, 24, 32, 48, 64])
    assert XFormer(arch, out_indices=range(5)).out_channels == (16, 24, 32, 48, 64)
    with pytest.raises(ValueError, match=r"missing the keys \['depths', 'qkv_dims'\]"):
        XFormer({k: v for k, v in arch.items() if k not in ('depths', 'qkv_dims')})
    with pytest.raises(ValueError, match='same length'):
        XFormer(dict(arch, depths=[0, 2, 4, 3]))


@pytest.mark.parametrize('kwargs,message', [
    (dict(arch='large'), r"Unknown XFormer arch 'large'; choose one of \['small', 'xsmall'"),
    (dict(out_indices=(2, 6)), r'outside \[-6, 5\]'),
    (dict(out_indices=-7), r'outside \[-6, 5\]'),
    (dict(out_indices=()), 'non-empty'),
    (dict(frozen_stages=7), r'frozen_stages must be in range\(-1, 7\)'),
    (dict(frozen_stages=-2), r'frozen_stages must be in range\(-1, 7\)'),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        XFormer(**kwargs)


def test_bad_inputs():
    model = XFormer('xxsmall').eval()
    with pytest.raises(ValueError, match=r'expects images of shape \(B, 3, H, W\).*\(1, 1, 64, 64\)'):
        model(torch.rand(1, 1, 64, 64))
    with pytest.raises(ValueError, match=r'at least 32x32 pixels.*\(31, 64\)'):
        model(torch.rand(1, 3, 31, 64))
