"""BatchNorm over the channels of tokens: the transformer norm of the quantization-friendly
XFormer (``transformer_norm_cfg=dict(type='TokenBatchNorm')``).

In inference a BatchNorm is a fixed affine map per channel, so it folds into the linear layer
that follows it (:meth:`TokenBatchNorm.fold_into`) and leaves nothing to run. A LayerNorm
normalises each token by its own statistics, a reduction per token that no layer can absorb, and
in an int8 XNNPACK program it runs in float32 between two conversions (XNNPACK has no int8
LayerNorm).
"""
from typing import Optional

import torch
import torch.nn as nn
from mmcv.cnn import build_norm_layer

from mmxformer.registry import MODELS


def build_token_norm(norm_cfg: Optional[dict], channels: int) -> nn.Module:
    """The norm layer of ``norm_cfg`` over ``channels`` channels of tokens; an identity for
    None (a deployed transformer, whose :class:`TokenBatchNorm` norms are folded)."""
    return nn.Identity() if norm_cfg is None else build_norm_layer(norm_cfg, channels)[1]


@MODELS.register_module()
class TokenBatchNorm(nn.Module):
    """``BatchNorm1d`` over the last axis of tokens (..., C): the statistics of each channel are
    taken over all tokens of all images of the batch.

    The BatchNorm is a child (``bn``), not a base class: mmengine's ``sync_bn='torch'`` option
    (torch's ``SyncBatchNorm.convert_sync_batchnorm``) replaces every BatchNorm module by a
    SyncBatchNorm that reads channels from axis 1. Replaced here, the child still gets the tokens
    as (N, C) rows from this module.
    """

    def __init__(self,
                 num_features: int,
                 eps: float = 1e-5,
                 momentum: float = 0.1,
                 affine: bool = True,
                 track_running_stats: bool = True):
        super().__init__()
        self.bn = nn.BatchNorm1d(num_features, eps, momentum, affine, track_running_stats)

    @property
    def num_features(self) -> int:
        return self.bn.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x.reshape(-1, x.shape[-1])).view(x.shape)

    def fold_into(self, layer: nn.Module) -> None:
        """Fold this norm, with its running statistics, into ``layer``, the ``nn.Linear`` or 1x1
        ``nn.Conv2d`` applied to its output, so that ``layer(x)`` afterwards computes what
        ``layer(self(x))`` computed in eval mode (``layer`` changes in place).

        Raises:
            ValueError: ``layer`` is not a Linear or an unpadded 1x1 Conv2d over this norm's
                channels.
        """
        is_pointwise_conv = (
            isinstance(layer, nn.Conv2d) and layer.kernel_size == (1, 1) and layer.groups == 1
            and layer.padding in ((0, 0), 'valid'))
        if not (isinstance(layer, nn.Linear) or is_pointwise_conv):
            raise ValueError(f'A TokenBatchNorm folds into the Linear or unpadded 1x1 Conv2d '
                             f'that follows it, not into {layer}')
        if layer.weight.shape[1] != self.num_features:
            raise ValueError(f'{layer} takes {layer.weight.shape[1]} channels; this norm has '
                             f'{self.num_features}')
        bn = self.bn
        with torch.no_grad():
            scale = torch.rsqrt(bn.running_var + bn.eps)
            shift = -bn.running_mean * scale
            if bn.affine:
                scale, shift = scale * bn.weight, shift * bn.weight + bn.bias
            weight = layer.weight.reshape(layer.weight.shape[:2])  # a view: (out, in)
            added = weight @ shift
            weight.mul_(scale)
            if layer.bias is None:
                layer.bias = nn.Parameter(added)
            else:
                layer.bias.add_(added)
