"""The pre-norm transformer layer of the XF block, with a swappable token mixer."""
from typing import List, Optional, Union

import torch
import torch.nn as nn
from mmcv.cnn import build_activation_layer
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule

from ..builder import build_attention
from .token_batch_norm import TokenBatchNorm, build_token_norm


class TransformerLayer(BaseModule):
    """Pre-norm transformer layer: ``x + attn(LN(x))`` then ``x + MLP(LN(x))``.

    Args:
        embed_dims (int): Channels of the tokens.
        mlp_ratio (float): Hidden channels of the MLP over ``embed_dims``.
        attn_cfg (dict): Config of the token mixer, built from mmxformer's registry with
            ``embed_dims`` added, e.g. ``dict(type='CrossFeatureAttention', qkv_dims=96)``.
        drop_path_rate (float): Stochastic depth of both residual branches. Defaults to 0.
        norm_cfg (dict, optional): Config of the norm layers; None for none (a deployed model
            whose TokenBatchNorms are folded). Defaults to LN.
        act_cfg (dict): Activation of the MLP. Defaults to GELU.
        init_cfg (dict, optional): Initialization config dict. Defaults to None.
    """

    def __init__(self,
                 embed_dims: int,
                 mlp_ratio: float,
                 attn_cfg: dict,
                 drop_path_rate: float = 0.,
                 norm_cfg: Optional[dict] = dict(type='LN'),
                 act_cfg: dict = dict(type='GELU'),
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(init_cfg)
        hidden = int(embed_dims * mlp_ratio)
        self.norm1 = build_token_norm(norm_cfg, embed_dims)
        self.attn = build_attention(attn_cfg, embed_dims)
        self.norm2 = build_token_norm(norm_cfg, embed_dims)
        self.mlp = nn.Sequential(
            nn.Linear(embed_dims, hidden), build_activation_layer(act_cfg),
            nn.Linear(hidden, embed_dims))
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def fold_norms(self) -> None:
        """For inference: fold each :class:`TokenBatchNorm` into the linear layer that reads its
        output (``norm1`` into the token mixer's qkv projection, ``norm2`` into the MLP's first
        linear) and leave an identity in its place. Other norms stay."""
        if isinstance(self.norm1, TokenBatchNorm) and isinstance(
                getattr(self.attn, 'qkv', None), nn.Linear):
            self.norm1.fold_into(self.attn.qkv)
            self.norm1 = nn.Identity()
        if isinstance(self.norm2, TokenBatchNorm):
            self.norm2.fold_into(self.mlp[0])
            self.norm2 = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))
