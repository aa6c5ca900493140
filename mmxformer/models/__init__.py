from .attention import (ATTENTIONS, CrossFeatureAttention, IdentityMixer,
                        MultiheadSelfAttention)
from .blocks import MV3Block, TransformerLayer, XFBlock
from .xformer import XFormer

__all__ = [
    'ATTENTIONS', 'CrossFeatureAttention', 'IdentityMixer', 'MultiheadSelfAttention', 'MV3Block',
    'TransformerLayer', 'XFBlock', 'XFormer'
]
