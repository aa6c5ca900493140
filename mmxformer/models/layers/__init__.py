from .cross_feature_attention import (CrossFeatureAttention, RuntimeCrossFeatureAttention,
                                      RuntimeCrossFeatureMixing)
from .identity_mixer import IdentityMixer
from .layer_norm import RuntimeLayerNorm
from .mv3_block import MV3Block
from .self_attention import MultiheadSelfAttention
from .squeeze_excitation import SqueezeExcitation, make_divisible
from .token_batch_norm import TokenBatchNorm
from .transformer_layer import TransformerLayer
from .xf_block import XFBlock

__all__ = [
    'CrossFeatureAttention', 'IdentityMixer', 'MultiheadSelfAttention', 'MV3Block',
    'RuntimeCrossFeatureAttention', 'RuntimeCrossFeatureMixing', 'RuntimeLayerNorm',
    'SqueezeExcitation', 'TokenBatchNorm', 'TransformerLayer', 'XFBlock', 'make_divisible'
]
