"""No token mixing at all: XFormer's attention-free skeleton, to measure what attention costs."""
from typing import Optional

import torch
import torch.nn as nn

from mmxformer.registry import MODELS


@MODELS.register_module()
class IdentityMixer(nn.Module):
    """Returns its input unchanged, in place of an attention.

    Args:
        embed_dims (int): Unused; accepted so that it can replace the other mixers.
        qkv_dims (int, optional): Unused, as ``embed_dims``: XFormer passes its arch's value to
            every mixer.
        num_heads (int, optional): Unused, as ``qkv_dims``.
    """

    def __init__(self,
                 embed_dims: int,
                 qkv_dims: Optional[int] = None,
                 num_heads: Optional[int] = None):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x
