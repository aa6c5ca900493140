from .backbones import XFormer
from .builder import build_attention
from .layers import (CrossFeatureAttention, IdentityMixer, MultiheadSelfAttention, MV3Block,
                     SqueezeExcitation, TransformerLayer, XFBlock, make_divisible)

__all__ = [
    'XFormer', 'build_attention', 'CrossFeatureAttention', 'IdentityMixer',
    'MultiheadSelfAttention', 'MV3Block', 'SqueezeExcitation', 'TransformerLayer', 'XFBlock',
    'make_divisible'
]
