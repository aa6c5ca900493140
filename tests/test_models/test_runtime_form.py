"""The runtime forms of the layers compute what their training forms compute."""
import copy

import pytest
import torch
from mmengine.model import convert_sync_batchnorm
from torch.nn.modules.batchnorm import _BatchNorm

from mmxformer.models import (CrossFeatureAttention, RuntimeCrossFeatureAttention, RuntimeLayerNorm,
                              TokenBatchNorm, XFormer, to_runtime_form)

#: The quantization-friendly variant (configs/*-relu*.py)
RELU_VARIANT = dict(
    act_cfg=dict(type='ReLU'),
    transformer_act_cfg=dict(type='ReLU'),
    transformer_norm_cfg=dict(type='TokenBatchNorm'))


def perturbed(model):
    """``model`` with its temperatures and norms away from their initialisation."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, CrossFeatureAttention):
                module.temperature.uniform_(0.5, 4.)
            elif isinstance(module, (torch.nn.LayerNorm, torch.nn.BatchNorm1d)):
                module.weight.uniform_(0.5, 2.)
                module.bias.uniform_(-1., 1.)
            if isinstance(module, torch.nn.BatchNorm1d):  # TokenBatchNorm's
                module.running_mean.uniform_(-1., 1.)
                module.running_var.uniform_(0.5, 2.)
    return model.eval()


@pytest.mark.parametrize('num_heads', [1, 4])
def test_runtime_cross_feature_attention_is_the_attention(num_heads):
    torch.manual_seed(0)
    attn = perturbed(CrossFeatureAttention(64, qkv_dims=96, num_heads=num_heads))
    runtime = attn.runtime_form()
    assert isinstance(runtime, RuntimeCrossFeatureAttention)
    x = torch.randn(3, 50, 64)
    with torch.no_grad():
        torch.testing.assert_close(runtime(x), attn(x), rtol=1e-4, atol=1e-5)


def test_runtime_cross_feature_attention_shares_its_linear_layers_and_fixes_its_constants():
    # as its docstring says: the linear layers are the attention's own, the constant matrices
    # are built from the weights once, so a later change to those weights is not seen
    torch.manual_seed(0)
    attn = perturbed(CrossFeatureAttention(64, qkv_dims=96, num_heads=4))
    runtime = attn.runtime_form()
    assert runtime.qkv is attn.qkv and runtime.mixing.proj is attn.proj
    x = torch.randn(2, 10, 64)
    with torch.no_grad():
        before = runtime(x)
        attn.context_weight.mul_(2.)
        assert not torch.allclose(attn(x), before, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(runtime(x), before, rtol=0, atol=0)


@pytest.mark.parametrize('shape', [(2, 10, 32), (7, 32), (2, 3, 5, 32)])
def test_runtime_layer_norm_is_the_layer_norm(shape):
    torch.manual_seed(0)
    norm = perturbed(torch.nn.LayerNorm(32))
    x = torch.randn(*shape) * 3 + 1
    with torch.no_grad():
        torch.testing.assert_close(RuntimeLayerNorm(norm)(x), norm(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    'norm', [torch.nn.LayerNorm(
        (4, 32)), torch.nn.LayerNorm(32, elementwise_affine=False)])
def test_runtime_layer_norm_refuses_what_it_does_not_compute(norm):
    assert not RuntimeLayerNorm.replaces(norm)
    with pytest.raises(ValueError, match='affine LayerNorms over the last axis'):
        RuntimeLayerNorm(norm)


def test_the_runtime_form_of_a_model_computes_what_the_model_computes():
    model = perturbed(XFormer('xxsmall'))
    form = to_runtime_form(model)
    kinds = {type(m) for m in form.modules()}
    assert CrossFeatureAttention not in kinds and torch.nn.LayerNorm not in kinds
    assert {RuntimeCrossFeatureAttention, RuntimeLayerNorm} <= kinds
    assert any(isinstance(m, CrossFeatureAttention) for m in model.modules())  # a copy
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        for want, got in zip(model(x), form(x)):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('layer', [torch.nn.Linear(32, 8), torch.nn.Conv2d(32, 8, 1, bias=False)])
def test_a_token_batch_norm_folds_into_the_layer_after_it(layer):
    torch.manual_seed(0)
    norm = perturbed(TokenBatchNorm(32))
    x = torch.randn(2, 5, 32)
    with torch.no_grad():
        if isinstance(layer, torch.nn.Linear):
            want = layer(norm(x))
            norm.fold_into(layer)
            got = layer(x)
        else:  # tokens (B, N, C) as a (B, C, N, 1) map
            to_map = lambda t: t.transpose(1, 2)[..., None]  # noqa: E731
            want = layer(to_map(norm(x)))
            norm.fold_into(layer)
            got = layer(to_map(x))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('layer, message', [(torch.nn.Conv2d(32, 8, 3), 'Linear or unpadded 1x1'),
                                            (torch.nn.Linear(16, 8), 'takes 16 channels')])
def test_a_token_batch_norm_refuses_a_layer_it_cannot_fold_into(layer, message):
    with pytest.raises(ValueError, match=message):
        TokenBatchNorm(32).fold_into(layer)


def test_a_token_batch_norm_normalises_each_channel_over_all_tokens():
    norm = TokenBatchNorm(4, affine=False).train()
    x = torch.randn(3, 7, 4) * torch.tensor([1., 2., 3., 4.]) + 5
    y = norm(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y.mean((0, 1)), torch.zeros(4), rtol=0, atol=1e-5)
    torch.testing.assert_close(y.var((0, 1), unbiased=False), torch.ones(4), rtol=0, atol=1e-3)


def test_the_runtime_form_of_the_relu_variant_has_no_norm_left_in_its_transformers():
    model = perturbed(XFormer('xxsmall', **RELU_VARIANT))
    form = to_runtime_form(model)
    kinds = {type(m) for m in form.modules()}
    assert not kinds & {
        TokenBatchNorm, torch.nn.BatchNorm1d, torch.nn.LayerNorm, RuntimeLayerNorm, torch.nn.SiLU
    }
    assert any(isinstance(m, TokenBatchNorm) for m in model.modules())  # a copy
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        for want, got in zip(model(x), form(x)):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_the_relu_variant_deploys_to_the_structure_of_deploy_true():
    torch.manual_seed(0)
    model = perturbed(XFormer('xxsmall', **RELU_VARIANT))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        want = model(x)
        model.switch_to_deploy()
        got = model(x)
    for w, g in zip(want, got):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    deployed = XFormer('xxsmall', deploy=True, **RELU_VARIANT)
    assert {
        k: v.shape
        for k, v in deployed.state_dict().items()
    } == {
        k: v.shape
        for k, v in model.state_dict().items()
    }


@pytest.mark.parametrize('training', [False, True])
def test_sync_bn_keeps_the_token_layout(monkeypatch, training):
    """mmengine's ``sync_bn`` option replaces every BatchNorm by a SyncBatchNorm, which reads
    channels from axis 1: in TokenBatchNorm the child is replaced, and it is fed (N, C) rows.
    torch's SyncBatchNorm runs on accelerators only; in one process it computes a BatchNorm,
    which is what it runs here (its forward without the device check)."""
    monkeypatch.setattr(torch.nn.SyncBatchNorm, 'forward', _BatchNorm.forward)
    model = perturbed(XFormer('xxsmall', **RELU_VARIANT)).train(training)
    # mmengine's conversion leaves new norms in training mode (the runner converts, then trains)
    synced = convert_sync_batchnorm(copy.deepcopy(model), 'torch').train(training)
    norms = [module for module in synced.modules() if isinstance(module, TokenBatchNorm)]
    assert norms and all(isinstance(norm.bn, torch.nn.SyncBatchNorm) for norm in norms)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        for expected, got in zip(model(x), synced(x)):
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
