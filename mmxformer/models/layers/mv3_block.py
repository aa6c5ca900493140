"""The MobileNetV3 block of XFormer's high-resolution stages."""
from typing import List, Optional, Union

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule

from .activation_checkpointing import checkpointed
from .squeeze_excitation import SqueezeExcitation


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
                 in_channels: int,
                 out_channels: int,
                 stride: int = 1,
                 expand_ratio: int = 4,
                 se_reduction: int = 4,
                 drop_path_rate: float = 0.,
                 with_cp: bool = False,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = dict(type='BN'),
                 act_cfg: dict = dict(type='SiLU'),
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
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

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.depthwise(self.expand(x))))
        return x + self.drop_path(out) if self.use_residual else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return checkpointed(self._forward, x, self.with_cp)
