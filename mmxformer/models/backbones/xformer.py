"""XFormer backbone: MobileNetV3 blocks for the high-resolution stages, XF blocks (MobileViT
blocks with Cross Feature Attention) for the low-resolution ones."""
from typing import Sequence

from mmcv.cnn import ConvModule
from mmengine.model import BaseModule, ModuleList, Sequential
from torch.nn.modules.batchnorm import _BatchNorm

from mmxformer.registry import MODELS
from mmxformer.utils.state_dict import check_pretrained_init
from ..layers import MV3Block, XFBlock

ARCH_KEYS = ('stem_channels', 'channels', 'num_blocks', 'strides', 'embed_dims', 'depths',
             'mlp_ratios', 'expand_ratio', 'qkv_dims', 'num_heads', 'last_channels')
STAGE_KEYS = ('channels', 'num_blocks', 'strides', 'embed_dims', 'depths', 'mlp_ratios')


@MODELS.register_module()
class XFormer(BaseModule):
    """XFormer backbone from `Lightweight Vision Transformer with Cross Feature Attention
    <https://arxiv.org/abs/2207.07268>`_.

    A 3x3 stride-2 stem, five stages and a final 1x1 conv. Each stage is ``num_blocks`` MV3 blocks
    (the first with the stage's stride) followed, where ``embed_dims`` is non-zero, by one XF block
    of ``depths`` transformer layers. Stage ``i`` of ``out_indices`` (0-4) is the output of stage
    ``i``; index 5 is the final 1x1 conv to ``last_channels`` (what a classifier pools). Stages
    after the last of ``out_indices`` are not built.

    Args:
        arch (str | dict): ``'small'`` (XFormer-S, the paper's model), ``'xsmall'``,
            ``'xxsmall'``, or a dict with the keys of :attr:`arch_settings`. Defaults to
            ``'small'``.
        in_channels (int): Channels of the input images. Defaults to 3.
        out_indices (int | Sequence[int]): Outputs to return, from 0 to 5; negative indices count
            from the end. Defaults to -1 (the final 1x1 conv).
        frozen_stages (int): -1 freezes nothing, 0 the stem, k the stem and the first k stages
            (up to 6, which includes the final conv). Frozen parts have no gradients and stay in
            eval mode. Defaults to -1.
        attn_cfg (dict): The attention of the XF blocks, from mmxformer's registry:
            ``CrossFeatureAttention`` (XFA) or ``MultiheadSelfAttention``. ``qkv_dims`` and
            ``num_heads`` default to the arch's. Defaults to ``dict(type='CrossFeatureAttention')``.
        patch_size (int): Side of the patches the XF blocks unfold. Defaults to 2.
        drop_path_rate (float): Stochastic depth, rising linearly over the transformer layers to
            this value. Defaults to 0.
        norm_eval (bool): Keep the BN layers in eval mode while training (frozen statistics).
            Defaults to False.
        with_cp (bool): Use gradient checkpointing (less memory, slower). Defaults to False.
        conv_cfg (dict, optional): Config of the conv layers. Defaults to None (Conv2d).
        norm_cfg (dict): Config of the norm layers after the convs. Defaults to BN.
        act_cfg (dict): Config of the activations after the convs. Defaults to SiLU.
        init_cfg (dict | list[dict], optional): Initialization config. Use
            ``dict(type='Pretrained', checkpoint=..., prefix='backbone.')`` to load the backbone
            of a classifier. Defaults to Kaiming for convs and constants for norms.

    Example:
        >>> import torch
        >>> from mmxformer.models import XFormer
        >>> model = XFormer('small', out_indices=(2, 3, 4)).eval()
        >>> [tuple(o.shape) for o in model(torch.rand(1, 3, 256, 256))]
        [(1, 96, 32, 32), (1, 128, 16, 16), (1, 160, 8, 8)]
        >>> model.out_channels
        (96, 128, 160)
    """

    # One column per stage. channels: output channels; num_blocks: MV3 blocks; strides: stride of
    # the first MV3 block; embed_dims, depths, mlp_ratios: the XF block (embed_dims 0: none).
    arch_settings = {
        'small': dict(
            stem_channels=16,
            channels=[32, 64, 96, 128, 160],
            num_blocks=[1, 3, 1, 1, 1],
            strides=[1, 2, 2, 2, 2],
            embed_dims=[0, 0, 144, 192, 240],
            depths=[0, 0, 2, 4, 3],
            mlp_ratios=[0, 0, 2, 2, 3],
            expand_ratio=4,
            qkv_dims=96,
            num_heads=4,
            last_channels=640),
        # XS and XXS are ours: MobileViT-XS/XXS widths with the XS-S depths and MLP ratios.
        'xsmall': dict(
            stem_channels=16,
            channels=[32, 48, 64, 80, 96],
            num_blocks=[1, 3, 1, 1, 1],
            strides=[1, 2, 2, 2, 2],
            embed_dims=[0, 0, 96, 120, 144],
            depths=[0, 0, 2, 4, 3],
            mlp_ratios=[0, 0, 2, 2, 3],
            expand_ratio=4,
            qkv_dims=64,
            num_heads=4,
            last_channels=384),
        'xxsmall': dict(
            stem_channels=16,
            channels=[16, 24, 48, 64, 80],
            num_blocks=[1, 3, 1, 1, 1],
            strides=[1, 2, 2, 2, 2],
            embed_dims=[0, 0, 64, 80, 96],
            depths=[0, 0, 2, 4, 3],
            mlp_ratios=[0, 0, 2, 2, 3],
            expand_ratio=2,
            qkv_dims=48,
            num_heads=4,
            last_channels=320),
    }

    def __init__(self,
                 arch='small',
                 in_channels=3,
                 out_indices=-1,
                 frozen_stages=-1,
                 attn_cfg=dict(type='CrossFeatureAttention'),
                 patch_size=2,
                 drop_path_rate=0.,
                 norm_eval=False,
                 with_cp=False,
                 conv_cfg=None,
                 norm_cfg=dict(type='BN'),
                 act_cfg=dict(type='SiLU'),
                 init_cfg=[
                     dict(type='Kaiming', layer=['Conv2d']),
                     dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm', 'LayerNorm'])
                 ]):
        super().__init__(init_cfg)
        self.arch = self.parse_arch(arch)
        self.in_channels = in_channels
        self.num_stages = len(self.arch['channels']) + 1  # the final 1x1 conv counts as one
        self.out_indices = self.parse_out_indices(out_indices, self.num_stages)
        if frozen_stages not in range(-1, self.num_stages + 1):
            raise ValueError(f'frozen_stages must be in range(-1, {self.num_stages + 1}) '
                             f'(-1: nothing, 0: the stem, k: stem and k stages), '
                             f'got {frozen_stages}')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        attn_cfg = dict(
            dict(qkv_dims=self.arch['qkv_dims'], num_heads=self.arch['num_heads']), **attn_cfg)
        common = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)

        arch = self.arch
        self.stem = ConvModule(in_channels, arch['stem_channels'], 3, 2, 1, **common)
        total_depth = sum(arch['depths'])
        rates = [drop_path_rate * i / max(total_depth - 1, 1) for i in range(total_depth)]
        self.stages = ModuleList()
        channels = arch['stem_channels']
        for out_channels, num_blocks, stride, embed_dims, depth, mlp_ratio in zip(
                *(arch[key] for key in STAGE_KEYS)):
            blocks = [
                MV3Block(
                    channels if i == 0 else out_channels,
                    out_channels,
                    stride if i == 0 else 1,
                    arch['expand_ratio'],
                    with_cp=with_cp,
                    **common) for i in range(num_blocks)
            ]
            if embed_dims:
                blocks.append(
                    XFBlock(out_channels, embed_dims, depth, mlp_ratio, attn_cfg, patch_size,
                            rates[:depth], with_cp, **common))
                rates = rates[depth:]
            self.stages.append(Sequential(*blocks))
            channels = out_channels
        self.stages.append(ConvModule(channels, arch['last_channels'], 1, **common))
        # Stages after the last output would never run (and DDP refuses unused parameters).
        del self.stages[max(self.out_indices) + 1:]
        self.stage_channels = (*arch['channels'], arch['last_channels'])
        self.total_stride = 2 * _product(arch['strides'])

    @classmethod
    def parse_arch(cls, arch):
        """The arch dict of a name in :attr:`arch_settings`, or a checked custom dict."""
        if isinstance(arch, str):
            if arch.lower() not in cls.arch_settings:
                raise ValueError(f'Unknown XFormer arch {arch!r}; choose one of '
                                 f'{sorted(cls.arch_settings)} or pass a dict')
            return dict(cls.arch_settings[arch.lower()])
        if not isinstance(arch, dict):
            raise TypeError(f'arch must be a str or a dict, got {type(arch).__name__}')
        missing = [key for key in ARCH_KEYS if key not in arch]
        if missing:
            raise ValueError(f'Custom XFormer arch is missing the keys {missing}; '
                             f'it needs {list(ARCH_KEYS)}')
        lengths = {key: len(arch[key]) for key in STAGE_KEYS}
        if len(set(lengths.values())) != 1:
            raise ValueError(f'The per-stage lists of a custom arch must have the same length, '
                             f'got {lengths}')
        return dict(arch)

    @staticmethod
    def parse_out_indices(out_indices, num_stages):
        indices = [out_indices] if isinstance(out_indices, int) else out_indices
        if not isinstance(indices, Sequence) or not indices:
            raise TypeError(f'out_indices must be an int or a non-empty sequence of ints, '
                            f'got {out_indices!r}')
        for index in indices:
            if index not in range(-num_stages, num_stages):
                raise ValueError(f'out_indices {out_indices} has {index}, outside '
                                 f'[{-num_stages}, {num_stages - 1}] (stages 0-'
                                 f'{num_stages - 2}, {num_stages - 1} the final conv)')
        return tuple(sorted(index % num_stages for index in indices))

    def init_weights(self):
        super().init_weights()
        # mmengine's Pretrained init loads nothing, quietly, when the keys do not match.
        check_pretrained_init(self)

    @property
    def out_channels(self):
        """Channels of each output, in the order of ``out_indices``."""
        return tuple(self.stage_channels[i] for i in self.out_indices)

    def forward(self, x):
        self._check_input(x)
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def _check_input(self, x):
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'XFormer expects images of shape (B, {self.in_channels}, H, W) '
                             f'(in_channels={self.in_channels}), got {tuple(x.shape)}')
        if min(x.shape[2:]) < self.total_stride:
            raise ValueError(f'XFormer needs images of at least {self.total_stride}x'
                             f'{self.total_stride} pixels (its total stride), '
                             f'got {tuple(x.shape[2:])}')

    def _freeze_stages(self):
        frozen = [self.stem, *self.stages[:self.frozen_stages]] if self.frozen_stages >= 0 else []
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode=True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self


def _product(values):
    result = 1
    for value in values:
        result *= value
    return result
