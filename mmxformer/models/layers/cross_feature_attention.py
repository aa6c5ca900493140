"""Cross Feature Attention (XFA), XFormer's token mixer: linear in the number of tokens.

Like every token mixer of the XF block (chosen through ``attn_cfg``), it takes tokens of shape
(B, N, C) and returns the same shape. The reference formula it is checked against is in
``docs/xfa.md``.

:meth:`CrossFeatureAttention.runtime_form` gives the same function for inference in a form that
runtimes without ``norm``, ``eye``, ``diagonal`` or ``split`` (XNNPACK) run whole:
:class:`RuntimeCrossFeatureAttention`, the qkv projection followed by
:class:`RuntimeCrossFeatureMixing`.
"""
import math
from typing import List, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from mmxformer.registry import MODELS


@MODELS.register_module()
class CrossFeatureAttention(BaseModule):
    """Cross Feature Attention (XFA) from `Lightweight Vision Transformer with Cross Feature
    Attention <https://arxiv.org/abs/2207.07268>`_.

    Per head, with L2-normalised queries and keys Q̂, K̂ (N tokens of d features):

    .. code-block:: text

        c = Q̂ · w_c                 query-context score, one value per token    (N)
        k̄ = (1/N) Σ_n c_n · K̂_n     context-weighted key                        (d)
        f = W_f · k̄                 query-feature score, one value per feature  (d)
        Y = λ · (V ⊙ f)             no softmax, nothing of size N×N

    and the heads' outputs are concatenated and projected back to ``embed_dims``. Time and memory
    are O(N·d).

    The fast path never materialises the normalised Q and K, nor copies Q, K or V out of the qkv
    projection: ``c`` divides by the norms of Q afterwards, the key norms fold into the weights of
    the mean, and λ·f folds into the output projection, so the only N·d-sized tensors are the qkv
    projection and the output.

    Args:
        embed_dims (int): Channels of the tokens.
        qkv_dims (int): Channels of Q, K and V, summed over the heads. Defaults to 96.
        num_heads (int): Number of heads; ``w_c``, ``W_f`` and λ are per head. Defaults to 4.
        temperature_init (float): Initial value of the learnable temperature λ. With 1.0 the
            branch starts small (\\|f\\| ≈ 0.1 at initialisation, since c and k̄ are bounded by
            the unit norms) so the residual stream dominates early training, as a LayerScale
            would, and λ is free to grow. Defaults to 1.0.
        qkv_bias (bool): Whether the qkv projection has a bias. Defaults to True.
        eps (float): Lower bound of the norms in the L2 normalisation. Defaults to 1e-6.
        init_cfg (dict, optional): Initialization config dict. Defaults to None.
    """

    def __init__(self,
                 embed_dims: int,
                 qkv_dims: int = 96,
                 num_heads: int = 4,
                 temperature_init: float = 1.0,
                 qkv_bias: bool = True,
                 eps: float = 1e-6,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(init_cfg)
        if qkv_dims % num_heads:
            raise ValueError(f'qkv_dims ({qkv_dims}) must be divisible by num_heads '
                             f'({num_heads})')
        self.num_heads = num_heads
        self.head_dims = qkv_dims // num_heads
        self.eps = eps
        self.qkv = nn.Linear(embed_dims, 3 * qkv_dims, bias=qkv_bias)
        # w_c (a 1x1 conv d -> 1) and W_f (a 1x1 conv d -> d), one of each per head.
        self.context_weight = nn.Parameter(torch.empty(num_heads, self.head_dims))
        self.feature_weight = nn.Parameter(torch.empty(num_heads, self.head_dims, self.head_dims))
        self.temperature = nn.Parameter(torch.full((num_heads, ), float(temperature_init)))
        self.proj = nn.Linear(qkv_dims, embed_dims)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise w_c and W_f as PyTorch initialises the 1x1 convs they stand for."""
        bound = 1 / math.sqrt(self.head_dims)
        nn.init.uniform_(self.context_weight, -bound, bound)
        nn.init.uniform_(self.feature_weight, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        h, d = self.num_heads, self.head_dims
        qkv = self.qkv(x)
        q, k, v = qkv.split(h * d, dim=-1)  # views, (B, N, h·d) each
        # |q_n| and |k_n| of every head, (B, N, 2h)
        norms = qkv[..., :2 * h * d].unflatten(-1, (2 * h, d)).norm(dim=-1).clamp_min(self.eps)
        # c_n = <q_n, w_c> / |q_n|: all heads in one product with the block-diagonal of the w_c,
        # (h·d, h), built from an identity (torch.block_diag has no ONNX export)
        eye = torch.eye(h, dtype=self.context_weight.dtype, device=self.context_weight.device)
        context = q @ (self.context_weight[:, :, None] * eye[:, None]).view(h * d, h)
        # k̄ = 1/N Σ_n (c_n / |k_n|) k_n: one product weighs every head's keys by every head's
        # weights, of which the diagonal blocks are wanted; no copy of the strided keys.
        weights = context / (norms[..., :h] * norms[..., h:])
        key = (weights.transpose(1, 2) @ k).view(B, h, h, d).diagonal(dim1=1, dim2=2) / N
        feature = torch.einsum('hde,beh->bhd', self.feature_weight, key)
        # (V ⊙ λf) W_oᵀ = V (diag(λf) W_oᵀ): scale the projection, not the N tokens.
        scale = (self.temperature[:, None] * feature).reshape(B, h * d, 1)
        weight = scale * self.proj.weight.t()
        # bmm, then the bias: the FLOP counters of the toolboxes (mmengine's analyzer) count
        # aten::bmm and skip aten::baddbmm, which would leave this product out of their totals.
        # The bias in the product's dtype, as baddbmm has it under autocast (bf16 stays bf16).
        out = torch.bmm(v, weight)
        return out + self.proj.bias.to(out.dtype)

    def runtime_form(self) -> 'RuntimeCrossFeatureAttention':
        """This attention for inference, with its constant matrices built from the weights now
        (see :class:`RuntimeCrossFeatureAttention`)."""
        return RuntimeCrossFeatureAttention(self)


class RuntimeCrossFeatureMixing(nn.Module):
    """What :class:`CrossFeatureAttention` computes from its qkv projection's output, for a frozen
    model, with its constant matrices built once and without the ops XNNPACK lacks (``norm``,
    ``eye``, ``diagonal``, ``split``):

    - the L2 norms of the queries and keys: sqrt(d · mean(x²)), the mean over the two innermost
      axes of the qkv projection viewed as (B, N · 2h, 1, d);
    - the diagonal blocks k̄_h of the product of all heads' weights with all heads' keys: a
      mask keeps block h of row h, and a product with a row of ones sums the rows;
    - w_c (block-diagonal, (h·d, h)) and λ_h W_f (block-diagonal, (h·d, h·d)) as constants.

    Args:
        attn (CrossFeatureAttention): The attention it computes for. Its output projection is
            shared; its constant matrices are built from its weights now, so later changes to
            those are not seen.
    """

    def __init__(self, attn: CrossFeatureAttention):
        super().__init__()
        h, d = attn.num_heads, attn.head_dims
        self.num_heads, self.head_dims, self.eps = h, d, attn.eps
        self.proj = attn.proj
        with torch.no_grad():
            eye = torch.eye(h, dtype=attn.context_weight.dtype)
            context = (attn.context_weight[:, :, None] * eye[:, None]).reshape(h * d, h)
            feature = attn.temperature[:, None, None] * attn.feature_weight.transpose(1, 2)
            blocks = torch.block_diag(*feature)  # (h·d, h·d): row (h, e), column (h, d)
            mask = eye.repeat_interleave(d, dim=1)  # (h, h·d): 1 where column block == row
        # as weights of F.linear, (out, in): a broadcasting matmul would leave expand_copy ops
        # to the portable kernels
        self.register_buffer('context', context.t().contiguous(), persistent=False)
        self.register_buffer('feature', blocks.t().contiguous(), persistent=False)
        self.register_buffer('mask', mask, persistent=False)
        self.register_buffer('ones', torch.ones(1, h), persistent=False)

    def forward(self, qkv: torch.Tensor) -> torch.Tensor:
        B, N, _ = qkv.shape
        h, d = self.num_heads, self.head_dims
        q, k, v = qkv[..., :h * d], qkv[..., h * d:2 * h * d], qkv[..., 2 * h * d:]
        squares = qkv[..., :2 * h * d].reshape(B, N * 2 * h, 1, d)
        norms = torch.sqrt((squares * squares).mean((2, 3), keepdim=True) * d)
        norms = norms.reshape(B, N, 2 * h).clamp_min(self.eps)
        weights = F.linear(q, self.context) / (norms[..., :h] * norms[..., h:])  # (B, N, h)
        keys = torch.bmm(weights.transpose(1, 2), k) * self.mask  # (B, h, h·d), blocks h of h
        key = F.linear(keys.transpose(1, 2), self.ones).transpose(1, 2)  # (B, 1, h·d)
        scale = F.linear(key, self.feature).reshape(B, h * d, 1) / N
        return torch.bmm(v, scale * self.proj.weight.t()) + self.proj.bias


class RuntimeCrossFeatureAttention(nn.Module):
    """:class:`CrossFeatureAttention` of a frozen model, in a form that XNNPACK runs whole: its
    qkv projection, then :class:`RuntimeCrossFeatureMixing`.

    The mixing is a module of its own because it divides by norms of the tokens, which int8
    does not resolve: an int8 quantizer leaves that module float32 by its type and quantizes
    the projection like any other linear layer (``mmxformer/deployment/quantize/pt2e.py``).

    Args:
        attn (CrossFeatureAttention): The module to replace; its linear layers are shared, its
            constant matrices built from its weights now (:class:`RuntimeCrossFeatureMixing`).
    """

    def __init__(self, attn: CrossFeatureAttention):
        super().__init__()
        self.qkv = attn.qkv
        self.mixing = RuntimeCrossFeatureMixing(attn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mixing(self.qkv(x))
