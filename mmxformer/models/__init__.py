from .backbones import XFormer
from .builder import build_attention
from .layers import (CrossFeatureAttention, IdentityMixer, MultiheadSelfAttention, MV3Block,
                     RuntimeCrossFeatureAttention, RuntimeCrossFeatureMixing, RuntimeLayerNorm,
                     SqueezeExcitation, TokenBatchNorm, TransformerLayer, XFBlock, make_divisible)
from .runtime_form import to_runtime_form

__all__ = [
    'XFormer', 'build_attention', 'CrossFeatureAttention', 'IdentityMixer',
    'MultiheadSelfAttention', 'MV3Block', 'RuntimeCrossFeatureAttention',
    'RuntimeCrossFeatureMixing', 'RuntimeLayerNorm', 'SqueezeExcitation', 'TokenBatchNorm',
    'TransformerLayer', 'XFBlock', 'make_divisible', 'to_runtime_form'
]
