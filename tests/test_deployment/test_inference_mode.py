import pytest
import torch
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from mmxformer.deployment import deploy
from mmxformer.models import CrossFeatureAttention, XFormer


def randomize(model):
    """BN statistics and affines, and XFA temperatures, far from their initial values, so that
    folding BN and the temperature matter."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, _BatchNorm):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
            elif isinstance(module, CrossFeatureAttention):
                module.temperature.uniform_(0.5, 2.0)
    return model


def plain_and_deployed(build):
    plain = randomize(build())
    plain.eval()
    deployed = build()
    deployed.load_state_dict(plain.state_dict())
    return plain, deploy(deployed)


@pytest.mark.parametrize('shape', [(2, 3, 64, 64), (1, 3, 70, 90)])
def test_deploy_matches_plain_eval(shape):
    plain, deployed = plain_and_deployed(lambda: XFormer('small', out_indices=(2, 3, 4, 5)))
    assert not any(isinstance(m, _BatchNorm) for m in deployed.modules())
    x = torch.rand(shape)
    with torch.no_grad():
        expected = plain(x)
    with torch.inference_mode():
        outs = deployed(x)
    for out, ref in zip(outs, expected):
        assert out.shape == ref.shape
        assert out.is_contiguous(memory_format=torch.channels_last)
        assert (out - ref).abs().max() <= 1e-4


@pytest.mark.needs('mmpretrain')
def test_deploy_treats_mmpretrain_baselines_alike():
    from mmpretrain.models import MobileViT
    plain, deployed = plain_and_deployed(lambda: MobileViT('xx_small'))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = plain(x)[-1]
    with torch.inference_mode():
        out = deployed(x)[-1]
    assert (out - expected).abs().max() <= 1e-4


def xfa_formula(attn, x):
    """XFA written from the spec, with the normalised Q̂ and K̂ built explicitly."""
    B, N, _ = x.shape
    h, d = attn.num_heads, attn.head_dims
    q, k, v = F.linear(x, attn.qkv.weight, attn.qkv.bias).reshape(B, N, 3, h, d).unbind(2)
    q_hat = q / q.norm(dim=-1, keepdim=True).clamp_min(attn.eps)
    k_hat = k / k.norm(dim=-1, keepdim=True).clamp_min(attn.eps)
    context = (q_hat * attn.context_weight).sum(-1)  # (B, N, h)
    key = (context[..., None] * k_hat).mean(1)  # (B, h, d)
    feature = (attn.feature_weight @ key[..., None]).squeeze(-1)  # W_f · k̄, (B, h, d)
    y = attn.temperature[:, None] * v * feature[:, None]  # (B, N, h, d)
    return F.linear(y.reshape(B, N, h * d), attn.proj.weight, attn.proj.bias)


def test_deployed_xfa_equals_the_formula():
    """Every XFA of a deployed XFormer, on the tokens it really gets (channels-last maps, padded
    odd sizes, inference mode), gives what the formula gives."""
    _, deployed = plain_and_deployed(lambda: XFormer('small', out_indices=(2, 3, 4)))
    seen = []
    for module in deployed.modules():
        if isinstance(module, CrossFeatureAttention):
            module.register_forward_hook(lambda m, args, out: seen.append((m, args[0], out)))
    with torch.inference_mode():
        deployed(torch.rand(1, 3, 90, 70))
        assert len(seen) == sum(XFormer.arch_settings['small']['depths'])
        for attn, tokens, out in seen:
            torch.testing.assert_close(out, xfa_formula(attn, tokens), rtol=1e-4, atol=1e-5)
