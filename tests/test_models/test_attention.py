import pytest
import torch
import torch.nn.functional as F

from mmxformer.models import CrossFeatureAttention, MultiheadSelfAttention


def xfa_reference(attn, x):
    """XFA written from the formula, one sample and one head at a time, no shortcuts."""
    h, d = attn.num_heads, attn.head_dims
    B, N, _ = x.shape
    qkv = F.linear(x, attn.qkv.weight, attn.qkv.bias)
    out = torch.zeros(B, N, h * d, dtype=x.dtype)
    for b in range(B):
        for i in range(h):
            q = qkv[b, :, i * d:(i + 1) * d]
            k = qkv[b, :, h * d + i * d:h * d + (i + 1) * d]
            v = qkv[b, :, 2 * h * d + i * d:2 * h * d + (i + 1) * d]
            q_hat = q / q.norm(dim=1, keepdim=True).clamp_min(attn.eps)
            k_hat = k / k.norm(dim=1, keepdim=True).clamp_min(attn.eps)
            c = q_hat @ attn.context_weight[i]  # (N,) query-context score
            k_bar = (c[:, None] * k_hat).sum(0) / N  # (d,) context-weighted key
            f = attn.feature_weight[i] @ k_bar  # (d,) query-feature score
            out[b, :, i * d:(i + 1) * d] = attn.temperature[i] * v * f
    return F.linear(out, attn.proj.weight, attn.proj.bias)


@pytest.mark.parametrize('embed_dims,qkv_dims,num_heads,tokens', [(144, 96, 4, 64), (32, 48, 3, 7)])
def test_xfa_matches_reference(embed_dims, qkv_dims, num_heads, tokens):
    attn = CrossFeatureAttention(embed_dims, qkv_dims, num_heads).double()
    with torch.no_grad():
        attn.temperature.uniform_(0.5, 2.0)
        attn.qkv.bias.normal_()
    x = torch.randn(2, tokens, embed_dims, dtype=torch.float64)
    torch.testing.assert_close(attn(x), xfa_reference(attn, x), rtol=1e-10, atol=1e-10)


def test_xfa_has_no_softmax_and_is_scaled_by_temperature():
    attn = CrossFeatureAttention(16, 16, 2)
    x = torch.randn(1, 10, 16)
    with torch.no_grad():
        attn.proj.bias.zero_()
        base = attn(x)
        attn.temperature.mul_(3)
    torch.testing.assert_close(attn(x), 3 * base)


def largest_intermediate(module, x):
    """Number of elements of the largest tensor any aten op produces in module(x)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Watch(TorchDispatchMode):
        largest = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else (out, ):
                if isinstance(t, torch.Tensor):
                    Watch.largest = max(Watch.largest, t.numel())
            return out

    with torch.no_grad(), Watch():
        module(x)
    return Watch.largest


def test_xfa_memory_is_linear_in_tokens():
    """No N×N tensor: the largest intermediate grows 4× when N grows 4×; self-attention's 16×."""
    xfa, msa = CrossFeatureAttention(144), MultiheadSelfAttention(144)
    n = 1024
    small, large = torch.randn(1, n, 144), torch.randn(1, 4 * n, 144)
    xfa_growth = largest_intermediate(xfa, large) / largest_intermediate(xfa, small)
    msa_growth = largest_intermediate(msa, large) / largest_intermediate(msa, small)
    print(f'largest intermediate grows x{xfa_growth:.2f} (XFA) and x{msa_growth:.2f} '
          f'(self-attention) when N grows x4')
    assert xfa_growth == pytest.approx(4.0)
    assert largest_intermediate(xfa, large) < 4 * n * 4 * n  # far below one N×N map
    assert msa_growth == pytest.approx(16.0)


def test_self_attention_matches_softmax_formula():
    attn = MultiheadSelfAttention(32, 32, 4).double()
    x = torch.randn(2, 9, 32, dtype=torch.float64)
    q, k, v = attn.qkv(x).chunk(3, dim=-1)
    heads = [
        torch.softmax(q[..., i:i + 8] @ k[..., i:i + 8].transpose(1, 2) / 8**0.5, -1)
        @ v[..., i:i + 8] for i in range(0, 32, 8)
    ]
    torch.testing.assert_close(attn(x), attn.proj(torch.cat(heads, -1)))


def test_heads_must_divide_qkv_dims():
    with pytest.raises(ValueError, match='divisible'):
        CrossFeatureAttention(64, 96, 5)


def test_build_attention_says_what_to_change():
    import torch.nn as nn

    from mmxformer.models import build_attention
    with pytest.raises(TypeError, match=r"attn_cfg must be a dict with a 'type', one of \[.*\]"):
        build_attention('MultiheadSelfAttention', 64)
    with pytest.raises(TypeError, match=r"attn_cfg type <class .*Linear'> is not an attention"):
        build_attention(dict(type=nn.Linear), 64)
    with pytest.raises(
            TypeError,
            match=r"MultiheadSelfAttention takes no argument 'heads' \(did you mean "
            r"'num_heads'\?\); it takes \['qkv_dims', 'num_heads', 'qkv_bias', 'init_cfg'\]"):
        build_attention(dict(type='MultiheadSelfAttention', heads=4), 64)
    # a class given as the type, with its arguments
    attn = build_attention(dict(type=MultiheadSelfAttention, num_heads=2, qkv_dims=32), 64)
    assert attn.num_heads == 2
