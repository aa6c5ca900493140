"""The XF block: a MobileViT block whose transformer layers use a swappable attention."""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule, ModuleList

from .activation_checkpointing import checkpointed
from .token_batch_norm import TokenBatchNorm, build_token_norm
from .transformer_layer import TransformerLayer


class XFBlock(BaseModule):
    """MobileViT block with a swappable attention: local conv features, global mixing of
    ``patch_size``² patches by transformer layers, then fusion with the block's input.

    ``local 3x3 conv -> 1x1 conv (C->D) -> unfold -> transformer layers -> LN -> fold ->
    1x1 conv (D->C) -> concat with input -> 3x3 conv (2C->C)``. Unfolding groups the pixels by
    their position inside each patch: ``patch_size``² sequences of HW / ``patch_size``² tokens.
    A feature map whose height or width is not a multiple of ``patch_size`` is padded with zeros
    for the transformer and cropped back after folding.

    Args:
        channels (int): Input and output channels C.
        embed_dims (int): Channels D of the tokens.
        depth (int): Number of transformer layers.
        mlp_ratio (float): Hidden channels of the MLPs over ``embed_dims``.
        attn_cfg (dict): Config of the attention, see :class:`TransformerLayer`.
        patch_size (int): Side of the patches. Defaults to 2.
        drop_path_rates (Sequence[float], optional): Stochastic depth of each transformer layer.
            Defaults to None (0 everywhere).
        with_cp (bool): Use gradient checkpointing in the transformer layers. Defaults to False.
        conv_cfg (dict, optional): Config of the conv layers. Defaults to None (Conv2d).
        norm_cfg (dict): Config of the norm layers after the convs. Defaults to BN.
        act_cfg (dict): Config of the activations after the convs. Defaults to SiLU.
        transformer_norm_cfg (dict, optional): Config of the norm layers of the transformer;
            None for none (folded TokenBatchNorms). Defaults to LN.
        transformer_act_cfg (dict): Activation of the transformer's MLPs. Defaults to GELU.
        init_cfg (dict, optional): Initialization config dict. Defaults to None.
    """

    def __init__(self,
                 channels: int,
                 embed_dims: int,
                 depth: int,
                 mlp_ratio: float,
                 attn_cfg: dict,
                 patch_size: int = 2,
                 drop_path_rates: Optional[Sequence[float]] = None,
                 with_cp: bool = False,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = dict(type='BN'),
                 act_cfg: dict = dict(type='SiLU'),
                 transformer_norm_cfg: Optional[dict] = dict(type='LN'),
                 transformer_act_cfg: dict = dict(type='GELU'),
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(init_cfg)
        drop_path_rates = drop_path_rates or [0.] * depth
        common = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.patch_size = patch_size
        self.with_cp = with_cp
        self.local = ConvModule(channels, channels, 3, padding=1, **common)
        self.to_tokens = ConvModule(
            channels, embed_dims, 1, conv_cfg=conv_cfg, norm_cfg=None, act_cfg=None, bias=False)
        self.layers = ModuleList([
            TransformerLayer(embed_dims, mlp_ratio, attn_cfg, rate, transformer_norm_cfg,
                             transformer_act_cfg) for rate in drop_path_rates
        ])
        self.norm = build_token_norm(transformer_norm_cfg, embed_dims)
        self.from_tokens = ConvModule(embed_dims, channels, 1, **common)
        self.fuse = ConvModule(2 * channels, channels, 3, padding=1, **common)

    def unfold(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """(B, D, H, W) -> (B·p², N, D) with N = ⌈H/p⌉·⌈W/p⌉, zero-padding H and W to p.

        One copy whatever the memory format; from channels-last it moves whole D-vectors. When
        traced (ONNX export) the padding is always recorded, so the graph fits any input size.
        """
        B, D, H, W = x.shape
        p = self.patch_size
        if H % p or W % p or torch.jit.is_tracing():
            x = F.pad(x, (0, -W % p, 0, -H % p))
        h, w = x.shape[2] // p, x.shape[3] // p
        tokens = x.reshape(B, D, h, p, w, p).permute(0, 3, 5, 2, 4, 1)
        return tokens.reshape(B * p * p, h * w, D), (h, w)

    def fold(self, tokens: torch.Tensor, grid: Tuple[int, int], like: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`unfold`: (B·p², N, D) -> (B, D, H, W), cropped to the size of
        ``like`` and in its memory format, in one copy (out of place, so that it can be traced)."""
        p, (h, w) = self.patch_size, grid
        B, D = like.shape[0], tokens.shape[-1]
        tokens = tokens.view(B, p, p, h, w, D)
        if like.is_contiguous(memory_format=torch.channels_last):
            # (B, H, W, D) in one copy, seen as (B, D, H, W): channels-last
            x = tokens.permute(0, 3, 1, 4, 2, 5).reshape(B, h * p, w * p, D).permute(0, 3, 1, 2)
        else:
            x = tokens.permute(0, 5, 3, 1, 4, 2).reshape(B, D, h * p, w * p)
        return x[:, :, :like.shape[2], :like.shape[3]]

    def fold_norms(self) -> None:
        """For inference: fold the block's last norm, a :class:`TokenBatchNorm`, into
        ``from_tokens`` (a 1x1 conv of each token: the fold in between only moves them) and
        leave an identity in its place; another norm stays. The transformer layers fold their
        own (:meth:`TransformerLayer.fold_norms`)."""
        if isinstance(self.norm, TokenBatchNorm):
            self.norm.fold_into(self.from_tokens.conv)
            self.norm = torch.nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens, grid = self.unfold(self.to_tokens(self.local(x)))
        for layer in self.layers:
            tokens = checkpointed(layer, tokens, self.with_cp)
        y = self.from_tokens(self.fold(self.norm(tokens), grid, x))
        return self.fuse(torch.cat([x, y], dim=1))
