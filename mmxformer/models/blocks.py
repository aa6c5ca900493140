"""The blocks XFormer is built from: the MV3 block and the XF block with its transformer layers."""
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import ConvModule, build_activation_layer, build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule, ModuleList

from ..registry import build_attention


def make_divisible(value, divisor=8):
    """Round ``value`` to the nearest multiple of ``divisor``, never below 90 % of it."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def checkpointed(module, x, with_cp):
    """``module(x)``, recomputed in the backward pass when ``with_cp`` and gradients flow."""
    if with_cp and x.requires_grad:
        return cp.checkpoint(module, x, use_reentrant=False)
    return module(x)


class SqueezeExcitation(BaseModule):
    """Channel gating by global context: pool, reduce, activate, expand, sigmoid.

    Args:
        channels (int): Input and output channels.
        reduction (int): Ratio of ``channels`` to the squeezed channels. Defaults to 4.
        act_cfg (dict): Activation between the two 1x1 convs. Defaults to SiLU.
        init_cfg (dict, optional): Initialization config dict. Defaults to None.
    """

    def __init__(self, channels, reduction=4, act_cfg=dict(type='SiLU'), init_cfg=None):
        super().__init__(init_cfg)
        squeezed = make_divisible(channels // reduction)
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.act = build_activation_layer(act_cfg)
        self.expand = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x):
        gate = self.expand(self.act(self.reduce(x.mean((2, 3), keepdim=True))))
        return x * gate.sigmoid()


class MV3Block(BaseModule):
    """MobileNetV3 inverted residual: 1x1 expand, 3x3 depthwise, squeeze-excitation, 1x1 project.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        stride (int): Stride of the depthwise conv. Defaults to 1.
        expand_ratio (int): Hidden channels over ``in_channels``. Defaults to 4.
        se_reduction (int): Reduction of the squeeze-excitation. Defaults to 4.
        drop_path_rate (float): Stochastic depth of the residual branch. Defaults to 0.
        with_cp (bool): Use gradient checkpointing. Defaults to False.
        conv_cfg (dict, optional): Config of the conv layers. Defaults to None (Conv2d).
        norm_cfg (dict): Config of the norm layers. Defaults to BN.
        act_cfg (dict): Config of the activations. Defaults to SiLU.
        init_cfg (dict, optional): Initialization config dict. Defaults to None.
    """

    def __init__(self,
                 in_channels,
                 out_channels,
                 stride=1,
                 expand_ratio=4,
                 se_reduction=4,
                 drop_path_rate=0.,
                 with_cp=False,
                 conv_cfg=None,
                 norm_cfg=dict(type='BN'),
                 act_cfg=dict(type='SiLU'),
                 init_cfg=None):
        super().__init__(init_cfg)
        hidden = in_channels * expand_ratio
        common = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        self.with_cp = with_cp
        self.use_residual = stride == 1 and in_channels == out_channels
        self.expand = ConvModule(in_channels, hidden, 1, act_cfg=act_cfg, **common)
        self.depthwise = ConvModule(
            hidden, hidden, 3, stride, 1, groups=hidden, act_cfg=act_cfg, **common)
        self.se = SqueezeExcitation(hidden, se_reduction, act_cfg)
        self.project = ConvModule(hidden, out_channels, 1, act_cfg=None, **common)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def _forward(self, x):
        out = self.project(self.se(self.depthwise(self.expand(x))))
        return x + self.drop_path(out) if self.use_residual else out

    def forward(self, x):
        return checkpointed(self._forward, x, self.with_cp)


class TransformerLayer(BaseModule):
    """Pre-norm transformer layer: ``x + attn(LN(x))`` then ``x + MLP(LN(x))``.

    Args:
        embed_dims (int): Channels of the tokens.
        mlp_ratio (float): Hidden channels of the MLP over ``embed_dims``.
        attn_cfg (dict): Config of the token mixer, built from mmxformer's registry with
            ``embed_dims`` added, e.g. ``dict(type='CrossFeatureAttention', qkv_dims=96)``.
        drop_path_rate (float): Stochastic depth of both residual branches. Defaults to 0.
        norm_cfg (dict): Config of the norm layers. Defaults to LN.
        act_cfg (dict): Activation of the MLP. Defaults to GELU.
        init_cfg (dict, optional): Initialization config dict. Defaults to None.
    """

    def __init__(self,
                 embed_dims,
                 mlp_ratio,
                 attn_cfg,
                 drop_path_rate=0.,
                 norm_cfg=dict(type='LN'),
                 act_cfg=dict(type='GELU'),
                 init_cfg=None):
        super().__init__(init_cfg)
        hidden = int(embed_dims * mlp_ratio)
        self.norm1 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.attn = build_attention(attn_cfg, embed_dims)
        self.norm2 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.mlp = nn.Sequential(
            nn.Linear(embed_dims, hidden), build_activation_layer(act_cfg),
            nn.Linear(hidden, embed_dims))
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def forward(self, x):
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


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
        transformer_norm_cfg (dict): Config of the norm layers of the transformer. Defaults to LN.
        transformer_act_cfg (dict): Activation of the transformer's MLPs. Defaults to GELU.
        init_cfg (dict, optional): Initialization config dict. Defaults to None.
    """

    def __init__(self,
                 channels,
                 embed_dims,
                 depth,
                 mlp_ratio,
                 attn_cfg,
                 patch_size=2,
                 drop_path_rates=None,
                 with_cp=False,
                 conv_cfg=None,
                 norm_cfg=dict(type='BN'),
                 act_cfg=dict(type='SiLU'),
                 transformer_norm_cfg=dict(type='LN'),
                 transformer_act_cfg=dict(type='GELU'),
                 init_cfg=None):
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
        self.norm = build_norm_layer(transformer_norm_cfg, embed_dims)[1]
        self.from_tokens = ConvModule(embed_dims, channels, 1, **common)
        self.fuse = ConvModule(2 * channels, channels, 3, padding=1, **common)

    def unfold(self, x):
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

    def fold(self, tokens, grid, like):
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

    def forward(self, x):
        tokens, grid = self.unfold(self.to_tokens(self.local(x)))
        for layer in self.layers:
            tokens = checkpointed(layer, tokens, self.with_cp)
        y = self.from_tokens(self.fold(self.norm(tokens), grid, x))
        return self.fuse(torch.cat([x, y], dim=1))
