"""The runtime forms of the layers compute what their training forms compute."""
import pytest
import torch

from mmxformer.models import (CrossFeatureAttention, RuntimeCrossFeatureAttention, RuntimeLayerNorm,
                              XFormer, to_runtime_form)


def perturbed(model):
    """``model`` with its temperatures and norms away from their initialisation."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, CrossFeatureAttention):
                module.temperature.uniform_(0.5, 4.)
            elif isinstance(module, torch.nn.LayerNorm):
                module.weight.uniform_(0.5, 2.)
                module.bias.uniform_(-1., 1.)
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
