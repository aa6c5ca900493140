import numpy as np
import pytest
import torch
from conftest import randomise_batch_norms
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


@pytest.mark.needs('mmpretrain')
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
    model = XFormer('xxsmall', norm_cfg=dict(type='GN', num_groups=8), act_cfg=dict(type='ReLU'))
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


XXS = XFormer.arch_settings['xxsmall']


@pytest.mark.parametrize('kwargs,message', [
    (dict(arch='large'), r"Unknown XFormer arch 'large'; choose one of \['small', 'xsmall'"),
    (dict(out_indices=(2, 6)), r'outside \[-6, 5\]'),
    (dict(out_indices=-7), r'outside \[-6, 5\]'),
    (dict(out_indices=()), 'non-empty'),
    (dict(out_indices=(2, 2, 3)), r'names stage 2 more than once \(as 2, 2;'),
    (dict(out_indices=(-1, 5)), r'names stage 5 more than once \(as -1, 5; negative indices'),
    (dict(out_indices=True), r'an int or a non-empty sequence of ints, got True \(bool\)'),
    (dict(out_indices=(2, False)), r'sequence of ints, got \(2, False\)'),
    (dict(out_indices='2'), r"sequence of ints, got '2' \(str\)"),
    (dict(frozen_stages=7), r'frozen_stages must be in range\(-1, 7\)'),
    (dict(frozen_stages=-2), r'frozen_stages must be in range\(-1, 7\)'),
    (dict(frozen_stages=True), r'frozen_stages must be in range\(-1, 7\), an int .* got True'),
    (dict(arch=dict(XXS, chanels=[16] * 5)),
     r"unknown keys \['chanels'\]; did you mean 'channels' for 'chanels'\?"),
    (dict(arch=dict(XXS, channels=32)),
     r"arch\['channels'\] must be a list with one value per stage, got 32"),
    (dict(arch=dict(XXS, depths=3)), r"arch\['depths'\] must be a list"),
    (dict(arch=dict(XXS, channels=[16, 24, -48, 64, 80])),
     r"arch\['channels'\] must be at least 1, got -48"),
    (dict(arch=dict(XXS, stem_channels=0)), r"arch\['stem_channels'\] must be at least 1, got 0"),
    (dict(arch=dict(XXS, last_channels=-320)), r"arch\['last_channels'\] must be at least 1"),
    (dict(arch=dict(XXS, expand_ratio=2.5)), r"arch\['expand_ratio'\] must be an int, got 2.5"),
    (dict(arch=dict(XXS, depths=[0, 1, 2, 4, 3])),
     r'Stage 1 .* \(0, 1, 0\): an XF block needs all three non-zero'),
    (dict(
        arch=dict(
            XXS, **{
                key: []
                for key in ('channels', 'num_blocks', 'strides', 'embed_dims', 'depths',
                            'mlp_ratios')
            })), 'one stage at least'),
    (dict(drop_path_rate=1.0), r'drop_path_rate must be a number in \[0, 1\).*got 1.0'),
    (dict(drop_path_rate=-0.1), r'drop_path_rate must be a number in \[0, 1\)'),
    (dict(drop_path_rate='0.1'), r"drop_path_rate must be a number in \[0, 1\).*got '0.1'"),
    (dict(patch_size=0), 'patch_size must be at least 1, got 0'),
    (dict(patch_size=-2), 'patch_size must be at least 1, got -2'),
    (dict(norm_cfg=dict(type='BNN')), r"Unknown norm_cfg type 'BNN' .*e.g. 'BN', 'SyncBN'"),
    (dict(norm_cfg='BN'), r"norm_cfg must be None or a dict with a 'type', got 'BN'"),
    (dict(in_channels=0), 'in_channels must be at least 1, got 0'),
    (dict(in_channels=True), r'in_channels must be an int, got True \(bool\)'),
    (dict(in_channels=3.0), r'in_channels must be an int, got 3.0 \(float\)'),
    (dict(deploy=True, norm_cfg=dict(type='GN',
                                     num_groups=8)), r'deploy=True needs a BatchNorm norm_cfg'),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        XFormer(**dict(dict(arch='xxsmall'), **kwargs))


def test_bad_inputs():
    model = XFormer('xxsmall').eval()
    with pytest.raises(
            ValueError, match=r'expects images of shape \(B, 3, H, W\).*\(1, 1, 64, 64\)'):
        model(torch.rand(1, 1, 64, 64))
    with pytest.raises(ValueError, match=r'at least 32x32 pixels.*\(31, 64\)'):
        model(torch.rand(1, 3, 31, 64))


ATTENTIONS = r"\['CrossFeatureAttention', 'IdentityMixer', 'MultiheadSelfAttention'\]"


@pytest.mark.parametrize('attn_cfg,error,message', [
    (dict(qkv_dims=48), TypeError,
     rf"attn_cfg must be a dict with a 'type', one of {ATTENTIONS} \(e.g. "
     r"dict\(type='CrossFeatureAttention'\)\), got \{'qkv_dims': 48\}"),
    ('CrossFeatureAttention', TypeError,
     "must be a dict with a 'type'.*got 'CrossFeatureAttention'"),
    (['CrossFeatureAttention'], TypeError, "must be a dict with a 'type'.*got \\['CrossFeat"),
    (None, TypeError, "must be a dict with a 'type'.*got None"),
    (dict(type='CrossFeatureAtention'), KeyError,
     f"Unknown attention type 'CrossFeatureAtention'; mmxformer has {ATTENTIONS}"),
    (dict(type='XFormer'), TypeError, f"type 'XFormer' is not an attention .*one of {ATTENTIONS}"),
    (dict(type=3), TypeError, 'attn_cfg type 3 is not an attention'),
    (dict(type='CrossFeatureAttention', qkv_dim=48), TypeError,
     r"CrossFeatureAttention takes no argument 'qkv_dim' \(did you mean 'qkv_dims'\?\)"),
    (dict(type='MultiheadSelfAttention',
          embed_dims=64), ValueError, 'attn_cfg sets embed_dims=64: leave it out'),
    (dict(type='CrossFeatureAttention',
          num_heads=0), ValueError, r"attn_cfg\['num_heads'\] must be at least 1, got 0"),
    (dict(type='MultiheadSelfAttention',
          qkv_dims='48'), TypeError, r"attn_cfg\['qkv_dims'\] must be an int, got '48'"),
])
def test_attn_cfg_that_builds_no_attention_is_refused(attn_cfg, error, message):
    with pytest.raises(error, match=message):
        XFormer('xxsmall', attn_cfg=attn_cfg)


def test_an_input_too_large_for_the_memory_is_refused_before_the_stem(monkeypatch):
    from mmxformer.models.backbones import xformer
    model = XFormer('xxsmall').eval()
    monkeypatch.setattr(xformer, 'free_memory', lambda device: 4 * 2**30)
    huge = torch.zeros(1, 3, 1, 1).expand(1, 3, 100000, 100000)  # no memory behind it
    # the stem's output and the first MV3 block's: 16 + 3 * 32 channels at 50000x50000
    with pytest.raises(
            MemoryError,
            match=r'XFormer: an input of shape \(1, 3, 100000, 100000\) \(torch.float32\) needs '
            r'at least 1043.1 GiB for its first stage alone \(112 channels at half its size\), '
            r'and cpu has 4.0 GiB free: use smaller images or a smaller batch'):
        model(huge)
    # a batch counts whole; without BN in the block (deployed), fewer tensors exist at once
    batch = torch.zeros(1, 3, 1, 1).expand(64, 3, 1024, 1024)
    with pytest.raises(MemoryError, match='needs at least 7.0 GiB .*112 channels'):
        model(batch)
    model.switch_to_deploy()
    with pytest.raises(MemoryError, match='needs at least 5.0 GiB .*80 channels'):
        model(batch)

    def unread(device):
        raise AssertionError('the free memory is read for an input far below it')

    monkeypatch.setattr(xformer, 'free_memory', unread)
    with torch.no_grad():
        model(torch.rand(2, 3, 64, 64))


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_free_memory_of_a_cuda_device():
    from mmxformer.models.backbones.xformer import free_memory
    free = free_memory(torch.device('cuda'))
    assert 0 < free <= torch.cuda.get_device_properties(0).total_memory


@pytest.mark.parametrize('inputs,message', [
    (torch.zeros(1, 3, 64, 64, dtype=torch.uint8),
     r'expects a float32, float16 or bfloat16 tensor of shape \(B, 3, H, W\) \(its weights are '
     r'torch.float32\), got torch.uint8: scale the images to float'),
    (torch.zeros(1, 3, 64, 64, dtype=torch.float64), r'got torch.float64: convert it with .float'),
    (torch.zeros(1, 3, 64, 64, dtype=torch.int64), 'got torch.int64: scale the images to float'),
    ([torch.zeros(3, 64, 64)], 'got a list: stack the images into one tensor'),
    (np.zeros((1, 3, 64, 64), np.float32), 'got a numpy.ndarray: convert it with torch.as_tensor'),
])
def test_inputs_of_the_wrong_type_or_dtype(inputs, message):
    with pytest.raises(TypeError, match=message):
        XFormer('xxsmall').eval()(inputs)


def test_inputs_of_the_weights_dtype_are_taken():
    model = XFormer('xxsmall', out_indices=(2, )).double().eval()
    assert model(torch.rand(1, 3, 32, 32, dtype=torch.float64))[0].dtype == torch.float64


def test_switch_to_deploy_folds_bn_in_place_with_the_same_outputs():
    model = randomise_batch_norms(XFormer('xxsmall', out_indices=(3, 4, 5))).eval()
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        expected = model(x)
        model.switch_to_deploy()
        folded = model(x)
    assert model.deploy
    assert not any(isinstance(m, _BatchNorm) for m in model.modules())
    assert model.stem.conv.bias is not None
    for out, ref in zip(folded, expected):
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.switch_to_deploy()  # a second call changes nothing
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_deploy_true_builds_the_folded_structure():
    folded = randomise_batch_norms(XFormer('xxsmall', out_indices=(3, 4, 5))).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = folded(x)
    folded.switch_to_deploy()
    deployed = XFormer('xxsmall', out_indices=(3, 4, 5), deploy=True).eval()
    assert not any(isinstance(m, _BatchNorm) for m in deployed.modules())
    deployed.load_state_dict(folded.state_dict(), strict=True)  # the same keys and shapes
    with torch.no_grad():
        for out, ref in zip(deployed(x), expected):
            torch.testing.assert_close(out, ref, rtol=0, atol=1e-4)


def test_switch_to_deploy_needs_batch_norm():
    model = XFormer('xxsmall', norm_cfg=dict(type='GN', num_groups=8))
    with pytest.raises(ValueError, match=r"folds BatchNorm .*norm_cfg=\{'type': 'GN'"):
        model.switch_to_deploy()
    assert not model.deploy


def test_a_deployed_backbone_trains_as_mobileone_does():
    """train() sets the training mode; the biased convs learn; frozen stages stay frozen; with no
    BN left, the training-mode forward is the eval one (no drop path here)."""
    model = XFormer('xxsmall', out_indices=(4, ), frozen_stages=1)
    model.switch_to_deploy()
    assert model.train() is model and model.training
    assert not model.stem.training and not model.stages[0].training
    frozen = [*model.stem.parameters(), *model.stages[0].parameters()]
    assert frozen and not any(p.requires_grad for p in frozen)
    x = torch.rand(2, 3, 64, 64)
    out = model(x)[0]
    with torch.no_grad():
        torch.testing.assert_close(out, model.eval()(x)[0])
    out.mean().backward()
    assert model.stages[1][0].expand.conv.bias.grad is not None
