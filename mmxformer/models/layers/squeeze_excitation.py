"""Squeeze-excitation, the channel gate of the MV3 block."""
from typing import List, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_activation_layer
from mmengine.model import BaseModule


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never below 90 % of it."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class SqueezeExcitation(BaseModule):
    """Channel gating by global context: pool, reduce, activate, expand, sigmoid.

    Args:
        channels (int): Input and output channels.
        reduction (int): Ratio of ``channels`` to the squeezed channels. Defaults to 4.
        act_cfg (dict): Activation between the two 1x1 convs. Defaults to SiLU.
        init_cfg (dict, optional): Initialization config dict. Defaults to None.
    """

    def __init__(self,
                 channels: int,
                 reduction: int = 4,
                 act_cfg: dict = dict(type='SiLU'),
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(init_cfg)
        squeezed = make_divisible(channels // reduction)
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.act = build_activation_layer(act_cfg)
        self.expand = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # a global pooling rather than a mean over (2, 3): the same function, which onnxruntime
        # runs in int8 (QLinearGlobalAveragePool), where it ran a mean in float32 over
        # channels-last maps, 10-20x slower than in its float32 graph
        gate = self.expand(self.act(self.reduce(F.adaptive_avg_pool2d(x, 1))))
        return x * gate.sigmoid()
