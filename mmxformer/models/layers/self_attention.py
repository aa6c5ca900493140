"""Multi-head self-attention, softmax(QKᵀ/√d)·V as in MobileViT: the paper's baseline for XFA,
quadratic in the number of tokens."""
from typing import List, Optional, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from mmxformer.registry import MODELS


@MODELS.register_module()
class MultiheadSelfAttention(BaseModule):
    """Standard multi-head self-attention, softmax(QKᵀ/√d)·V, as in MobileViT.

    It builds the N×N attention map of every head: time and memory are O(N²). It is here as the
    baseline XFA is compared with.

    Args:
        embed_dims (int): Channels of the tokens.
        qkv_dims (int): Channels of Q, K and V, summed over the heads. Defaults to 96.
        num_heads (int): Number of heads. Defaults to 4.
        qkv_bias (bool): Whether the qkv projection has a bias. Defaults to True.
        init_cfg (dict, optional): Initialization config dict. Defaults to None.
    """

    def __init__(self,
                 embed_dims: int,
                 qkv_dims: int = 96,
                 num_heads: int = 4,
                 qkv_bias: bool = True,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(init_cfg)
        if qkv_dims % num_heads:
            raise ValueError(f'qkv_dims ({qkv_dims}) must be divisible by num_heads '
                             f'({num_heads})')
        self.num_heads = num_heads
        self.scale = (qkv_dims // num_heads)**-0.5
        self.qkv = nn.Linear(embed_dims, 3 * qkv_dims, bias=qkv_bias)
        self.proj = nn.Linear(qkv_dims, embed_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, -1))
