"""XFormer backbone: MobileNetV3 blocks for the high-resolution stages, XF blocks (MobileViT
blocks with Cross Feature Attention) for the low-resolution ones."""
import collections.abc
import difflib
import numbers
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule, fuse_conv_bn
from mmengine.logging import print_log
from mmengine.model import BaseModule, ModuleList, Sequential
from mmengine.model.weight_init import update_init_info
from mmengine.registry import MODELS as MMENGINE_MODELS
from torch.nn.modules.batchnorm import _BatchNorm

from mmxformer.checkpoint.state_dict import load_pretrained, pretrained_init_cfgs
from mmxformer.registry import MODELS
from ..builder import attention_types
from ..layers import MV3Block, TokenBatchNorm, XFBlock
from ..runtime_form import fold_token_norms

# The smallest value of each key of an arch dict: the per-stage lists (STAGE_KEYS), then the
# scalars. embed_dims, depths and mlp_ratios are 0 in the stages without an XF block.
STAGE_MINIMA = dict(channels=1, num_blocks=1, strides=1, embed_dims=0, depths=0, mlp_ratios=0)
SCALAR_MINIMA = dict(stem_channels=1, expand_ratio=1, qkv_dims=1, num_heads=1, last_channels=1)
STAGE_KEYS = tuple(STAGE_MINIMA)
ARCH_KEYS = ('stem_channels', *STAGE_KEYS, 'expand_ratio', 'qkv_dims', 'num_heads', 'last_channels')
#: The dtypes of the inputs XFormer takes besides that of its weights (float16 and bfloat16 for
#: autocast, which casts them where needed).
INPUT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
#: Inputs whose first stage needs less memory than this are not checked against the free memory:
#: reading it would cost more than the forward pass of such an input.
MEMORY_CHECK_BYTES = 1 << 30


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
        transformer_norm_cfg (dict): Config of the norm layers of the XF blocks' transformer
            layers: ``LN`` (the paper's), or ``TokenBatchNorm``, which :meth:`switch_to_deploy`
            folds into the linear layers after them (``deploy=True`` builds none). Defaults to
            LN.
        transformer_act_cfg (dict): Activation of the transformer layers' MLPs. Defaults to
            GELU.
        deploy (bool): Build the structure of :meth:`switch_to_deploy`: every conv that BN
            follows has a bias and no BN, so that a checkpoint converted by it (mmpretrain's
            ``tools/model_converters/reparameterize_model.py``) loads. Needs a BatchNorm
            ``norm_cfg``. Defaults to False.
        init_cfg (dict | list[dict], optional): Initialization config. Use
            ``dict(type='Pretrained', checkpoint=..., prefix='backbone.')`` to load the backbone
            of a classifier: mmxformer loads it (with its safe loader), however the type is
            spelled, and only when every weight of the backbone is there with its shape and no
            other key is under the prefix (those of stages it does not build excepted).
            Defaults to Kaiming for convs and constants for norms.

    Raises:
        TypeError, ValueError: An argument that cannot work; the message says what to change.
        MemoryError: In :meth:`forward`, an input whose first stage alone needs more memory
            than its device has free; said before the stem runs.
        PretrainedKeysError: In :meth:`init_weights`, a ``Pretrained`` checkpoint that does not
            fit.

    A deployed backbone (``deploy=True`` or after :meth:`switch_to_deploy`) still trains, as
    mmpretrain's MobileOne and RepVGG do: ``train()`` sets the training mode, and the biased
    convs are trainable like any other (there are no BN statistics left to update; freezing and
    drop path behave as before). Fine-tune the undeployed model and deploy it afterwards to keep
    BN during training.

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
        'small':
        dict(
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
        'xsmall':
        dict(
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
        'xxsmall':
        dict(
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
                 arch: Union[str, dict] = 'small',
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = -1,
                 frozen_stages: int = -1,
                 attn_cfg: dict = dict(type='CrossFeatureAttention'),
                 patch_size: int = 2,
                 drop_path_rate: float = 0.,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = dict(type='BN'),
                 act_cfg: dict = dict(type='SiLU'),
                 transformer_norm_cfg: dict = dict(type='LN'),
                 transformer_act_cfg: dict = dict(type='GELU'),
                 deploy: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = [
                     dict(type='Kaiming', layer=['Conv2d']),
                     dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm', 'LayerNorm'])
                 ]):
        super().__init__(init_cfg)
        self.arch = self.parse_arch(arch)
        self.in_channels = _check_int('in_channels', in_channels, 1)
        self.num_stages = len(self.arch['channels']) + 1  # the final 1x1 conv counts as one
        self.out_indices = self.parse_out_indices(out_indices, self.num_stages)
        if not _is_int(frozen_stages) or frozen_stages not in range(-1, self.num_stages + 1):
            raise ValueError(f'frozen_stages must be in range(-1, {self.num_stages + 1}), an int '
                             f'(-1: nothing, 0: the stem, k: stem and k stages), '
                             f'got {frozen_stages!r}')
        self.frozen_stages = frozen_stages
        _check_int('patch_size', patch_size, 1)
        if (isinstance(drop_path_rate, bool) or not isinstance(drop_path_rate, numbers.Real)
                or not 0 <= drop_path_rate < 1):
            raise ValueError(f'drop_path_rate must be a number in [0, 1) (the stochastic depth '
                             f'of the last transformer layer), got {drop_path_rate!r}')
        self.norm_eval = norm_eval
        self.norm_cfg = norm_cfg
        folds = _norm_folds(norm_cfg)
        if deploy and not folds:
            raise ValueError(f'deploy=True needs a BatchNorm norm_cfg (BN, SyncBN): only '
                             f'BatchNorm folds into the convs; got norm_cfg={norm_cfg!r}')
        self.deploy = deploy
        attn_cfg = self.parse_attn_cfg(attn_cfg, self.arch)
        # deploy: the structure fuse_conv_bn leaves, convs with a bias (ConvModule's 'auto'
        # without a norm) and no BN, so that the state dicts have the same keys.
        common = dict(conv_cfg=conv_cfg, norm_cfg=None if deploy else norm_cfg, act_cfg=act_cfg)
        # and no TokenBatchNorm in the transformers: switch_to_deploy folds them too
        if deploy and _is_norm(transformer_norm_cfg, TokenBatchNorm, 'transformer_norm_cfg'):
            transformer_norm_cfg = None

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
                    XFBlock(
                        out_channels,
                        embed_dims,
                        depth,
                        mlp_ratio,
                        attn_cfg,
                        patch_size,
                        rates[:depth],
                        with_cp,
                        transformer_norm_cfg=transformer_norm_cfg,
                        transformer_act_cfg=transformer_act_cfg,
                        **common))
                rates = rates[depth:]
            self.stages.append(Sequential(*blocks))
            channels = out_channels
        self.stages.append(ConvModule(channels, arch['last_channels'], 1, **common))
        # Stages after the last output would never run (and DDP refuses unused parameters).
        del self.stages[max(self.out_indices) + 1:]
        self.stage_channels = (*arch['channels'], arch['last_channels'])
        self.total_stride = 2 * _product(arch['strides'])
        self._first_stage_channels = _first_stage_channels(arch, deploy or norm_cfg is None)

    @classmethod
    def parse_arch(cls, arch):
        """The arch dict of a name in :attr:`arch_settings`, or a checked custom dict.

        Raises:
            TypeError, ValueError: ``arch`` is not a known name, or a dict with other keys, or
                values of the wrong type or range.
        """
        if isinstance(arch, str):
            if arch.lower() not in cls.arch_settings:
                raise ValueError(f'Unknown XFormer arch {arch!r}; choose one of '
                                 f'{sorted(cls.arch_settings)} or pass a dict')
            return dict(cls.arch_settings[arch.lower()])
        if not isinstance(arch, dict):
            raise TypeError(f'arch must be a str or a dict, got {type(arch).__name__}')
        unknown = [key for key in arch if key not in ARCH_KEYS]
        if unknown:
            hints = {key: difflib.get_close_matches(str(key), ARCH_KEYS, n=1) for key in unknown}
            meant = ''.join(f'; did you mean {match[0]!r} for {key!r}?'
                            for key, match in hints.items() if match)
            raise ValueError(f'Custom XFormer arch has the unknown keys {unknown}{meant} '
                             f'(it takes {list(ARCH_KEYS)})')
        missing = [key for key in ARCH_KEYS if key not in arch]
        if missing:
            raise ValueError(f'Custom XFormer arch is missing the keys {missing}; '
                             f'it needs {list(ARCH_KEYS)}')
        for key, minimum in SCALAR_MINIMA.items():
            _check_int(f'arch[{key!r}]', arch[key], minimum)
        for key, minimum in STAGE_MINIMA.items():
            values = arch[key]
            if not isinstance(values, (list, tuple)):
                raise TypeError(f'arch[{key!r}] must be a list with one value per stage, got '
                                f'{values!r}')
            for value in values:
                if key == 'mlp_ratios':
                    _check_number(f'arch[{key!r}]', value, minimum)
                else:
                    _check_int(f'arch[{key!r}]', value, minimum)
        lengths = {key: len(arch[key]) for key in STAGE_KEYS}
        if len(set(lengths.values())) != 1 or not lengths['channels']:
            raise ValueError(f'The per-stage lists of a custom arch must have the same length, '
                             f'one stage at least, got {lengths}')
        for i, xf_block in enumerate(zip(arch['embed_dims'], arch['depths'], arch['mlp_ratios'])):
            if any(xf_block) and not all(xf_block):
                raise ValueError(f'Stage {i} of the custom arch has embed_dims, depths and '
                                 f'mlp_ratios {xf_block}: an XF block needs all three non-zero, '
                                 'a stage without one has all three 0')
        return dict(arch)

    @staticmethod
    def parse_attn_cfg(attn_cfg: dict, arch: dict) -> dict:
        """``attn_cfg`` with the arch's ``qkv_dims`` and ``num_heads`` where it has none.

        The rest (the type, its other arguments) is checked where the attention is built
        (:func:`~mmxformer.models.build_attention`), still at construction.

        Raises:
            TypeError, ValueError: ``attn_cfg`` is not a dict with a ``type``, or its
                ``qkv_dims`` or ``num_heads`` is not a positive int.
        """
        if not isinstance(attn_cfg, dict) or 'type' not in attn_cfg:
            raise TypeError(f"attn_cfg must be a dict with a 'type', one of "
                            f"{attention_types()} (e.g. dict(type='CrossFeatureAttention')), "
                            f'got {attn_cfg!r}')
        attn_cfg = dict(dict(qkv_dims=arch['qkv_dims'], num_heads=arch['num_heads']), **attn_cfg)
        for key in ('qkv_dims', 'num_heads'):
            _check_int(f'attn_cfg[{key!r}]', attn_cfg[key], 1)
        return attn_cfg

    @staticmethod
    def parse_out_indices(out_indices, num_stages):
        """``out_indices`` as a sorted tuple of stage numbers in ``range(num_stages)``.

        Raises:
            TypeError, ValueError: Not an int or a non-empty sequence of ints, an index out of
                range, or a stage named twice.
        """
        indices = [out_indices] if _is_int(out_indices) else out_indices
        if (isinstance(indices, str) or not isinstance(indices, collections.abc.Sequence)
                or not indices or not all(_is_int(index) for index in indices)):
            raise TypeError(f'out_indices must be an int or a non-empty sequence of ints, '
                            f'got {out_indices!r} ({type(out_indices).__name__})')
        for index in indices:
            if index not in range(-num_stages, num_stages):
                raise ValueError(f'out_indices {out_indices} has {index}, outside '
                                 f'[{-num_stages}, {num_stages - 1}] (stages 0-'
                                 f'{num_stages - 2}, {num_stages - 1} the final conv)')
        stages = [index % num_stages for index in indices]
        for stage in stages:
            if stages.count(stage) > 1:
                names = ', '.join(str(i) for i in indices if i % num_stages == stage)
                raise ValueError(f'out_indices {out_indices} names stage {stage} more than once '
                                 f'(as {names}; negative indices count from the end): name each '
                                 'output once')
        return tuple(sorted(stages))

    @property
    def unbuilt_prefixes(self):
        """The state-dict prefixes of the stages after the last of ``out_indices``, which this
        backbone does not build: a checkpoint's weights for them are not needed."""
        return tuple(f'stages.{i}.' for i in range(len(self.stages), self.num_stages))

    def init_weights(self) -> None:
        """Initialise the weights as ``init_cfg`` says.

        Its ``Pretrained`` entries (whatever the spelling of the type: ``'Pretrained'``,
        ``'mmengine.Pretrained'``, ``PretrainedInit``) are loaded here, last, with
        :func:`~mmxformer.checkpoint.state_dict.load_pretrained`: through the safe loader, and only
        when the checkpoint fits (mmengine's own loading is not strict and only logs what does
        not fit). The stages this backbone does not build may be in the checkpoint.

        Raises:
            PretrainedKeysError: A ``Pretrained`` checkpoint does not fit; nothing is loaded.
        """
        pretrained, others = pretrained_init_cfgs(self.init_cfg)
        if not pretrained or self.is_init:
            super().init_weights()
            return
        init_cfg, self.init_cfg = self.init_cfg, others
        try:
            super().init_weights()
        finally:
            self.init_cfg = init_cfg
        for cfg in pretrained:
            if 'checkpoint' not in cfg:
                raise ValueError(f"A Pretrained init_cfg needs 'checkpoint', got {cfg}")
            checkpoint, prefix = cfg['checkpoint'], cfg.get('prefix')
            print_log(f'load {prefix or "the model"} from {checkpoint}', logger='current')
            load_pretrained(
                self,
                checkpoint,
                prefix,
                cfg.get('map_location', 'cpu'),
                allow_unexpected=self.unbuilt_prefixes)
            if hasattr(self, '_params_init_info'):  # the log of a model XFormer is part of
                update_init_info(self, init_info=f'Pretrained: loaded from {checkpoint}')

    @property
    def out_channels(self):
        """Channels of each output, in the order of ``out_indices``."""
        return tuple(self.stage_channels[i] for i in self.out_indices)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        self._check_input(x)
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def _check_input(self, x):
        # A few attribute reads: nothing measurable next to the stem conv.
        expected = f'a float32, float16 or bfloat16 tensor of shape (B, {self.in_channels}, H, W)'
        if not isinstance(x, torch.Tensor):
            hint = ('stack the images into one tensor (the data_preprocessor does)' if isinstance(
                x, (list, tuple)) else 'convert it with torch.as_tensor')
            kind = type(x).__qualname__
            if type(x).__module__ != 'builtins':
                kind = f'{type(x).__module__}.{kind}'
            raise TypeError(f'XFormer expects {expected}, got a {kind}: {hint}')
        if x.dtype not in INPUT_DTYPES and x.dtype != self.stem.conv.weight.dtype:
            hint = ('scale the images to float (the data_preprocessor does)'
                    if not x.is_floating_point() else 'convert it with .float()')
            raise TypeError(f'XFormer expects {expected} (its weights are '
                            f'{self.stem.conv.weight.dtype}), got {x.dtype}: {hint}')
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'XFormer expects images of shape (B, {self.in_channels}, H, W) '
                             f'(in_channels={self.in_channels}), got {tuple(x.shape)}')
        if min(x.shape[2:]) < self.total_stride:
            raise ValueError(f'XFormer needs images of at least {self.total_stride}x'
                             f'{self.total_stride} pixels (its total stride), '
                             f'got {tuple(x.shape[2:])}')
        self._check_memory(x)

    def _check_memory(self, x):
        # Far too large an input would fail deep in an allocator, or be killed by the system's
        # OOM killer without a word: what its first stage alone needs, a lower bound of the
        # forward pass, is compared with the free memory first.
        numel = x.numel()
        if not isinstance(numel, int):  # symbolic shapes (torch.export, torch.compile)
            return
        # the first stage's channels at a quarter of the input's pixels
        need = int(numel * x.element_size() * self._first_stage_channels / (4 * self.in_channels))
        if need <= MEMORY_CHECK_BYTES:
            return
        free = free_memory(x.device)
        if free is not None and need > free:
            raise MemoryError(f'XFormer: an input of shape {tuple(x.shape)} ({x.dtype}) needs '
                              f'at least {need / 2**30:.1f} GiB for its first stage alone '
                              f'({self._first_stage_channels:g} channels at half its size), and '
                              f'{x.device} has {free / 2**30:.1f} GiB free: use smaller images '
                              'or a smaller batch')

    def switch_to_deploy(self) -> None:
        """Fold every BatchNorm into the conv it follows, in place, as mmpretrain's MobileOne
        and RepVGG do: mmcv's ``fuse_conv_bn``, as :func:`mmxformer.deployment.deploy` runs it;
        and a ``TokenBatchNorm`` of the transformers into the linear layer after it
        (:func:`~mmxformer.models.runtime_form.fold_token_norms`).

        Afterwards the backbone has the structure (and state-dict keys) of ``deploy=True``, and
        in eval mode the same outputs, to float rounding. A second call does nothing.

        Raises:
            ValueError: ``norm_cfg`` is not a BatchNorm, which does not fold.
        """
        if self.deploy:
            return
        if not _norm_folds(self.norm_cfg):
            raise ValueError(f'switch_to_deploy() folds BatchNorm into the convs; this XFormer '
                             f'has norm_cfg={self.norm_cfg!r}, which does not fold')
        fuse_conv_bn(self)
        fold_token_norms(self)
        self._freeze_stages()  # the folded weights are new parameters
        self._first_stage_channels = _first_stage_channels(self.arch, without_norm=True)
        self.deploy = True

    def _freeze_stages(self):
        frozen = [self.stem, *self.stages[:self.frozen_stages]] if self.frozen_stages >= 0 else []
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'XFormer':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self


def _first_stage_channels(arch, without_norm):
    """Channels, at half the input's size, of the tensors that exist together in the first MV3
    block: its input and expansion, and the output of the conv it runs (with that of its
    BatchNorm), the depthwise conv's at the stage's stride."""
    conv_outputs = 1 if without_norm else 2
    hidden = arch['stem_channels'] * arch['expand_ratio']
    return arch['stem_channels'] + hidden * max(conv_outputs,
                                                1 + conv_outputs / arch['strides'][0]**2)


def free_memory(device: torch.device) -> Optional[int]:
    """Bytes that tensors on ``device`` can take now, or None where that is not known.

    CPU: the kernel's ``MemAvailable`` (Linux); CUDA: the device's free memory plus what
    PyTorch's caching allocator holds unused.
    """
    if device.type == 'cuda':
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    if device.type != 'cpu':
        return None
    try:
        with open('/proc/meminfo') as f:
            fields = dict(line.split(':', 1) for line in f)
    except OSError:  # not Linux
        return None
    if 'MemAvailable' not in fields:
        return None
    return int(fields['MemAvailable'].split()[0]) * 1024  # in kB


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_int(name, value, minimum):
    """``value``, an int of at least ``minimum`` (bools refused: True is not a width)."""
    if not _is_int(value):
        raise TypeError(f'{name} must be an int, got {value!r} ({type(value).__name__})')
    if value < minimum:
        raise ValueError(f'{name} must be at least {minimum}, got {value}')
    return value


def _check_number(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f'{name} must be a number, got {value!r} ({type(value).__name__})')
    if value < minimum:
        raise ValueError(f'{name} must be at least {minimum}, got {value}')


def _norm_folds(norm_cfg):
    """Whether the norm layer of ``norm_cfg`` is a BatchNorm (what ``fuse_conv_bn`` folds).

    Raises:
        TypeError, ValueError: see :func:`_norm_layer`.
    """
    return _is_norm(norm_cfg, (_BatchNorm, nn.SyncBatchNorm))


def _is_norm(norm_cfg, classes, name='norm_cfg'):
    """Whether ``norm_cfg`` builds one of ``classes``. Its type is looked up as mmcv's
    ``build_norm_layer`` will, so that an unknown one fails here, by its name, rather than deep
    in the build.

    Raises:
        TypeError, ValueError: ``norm_cfg`` is neither None nor a dict with a known ``type``.
    """
    if norm_cfg is None:
        return False
    if not isinstance(norm_cfg, dict) or 'type' not in norm_cfg:
        raise TypeError(f"{name} must be None or a dict with a 'type', got {norm_cfg!r}")
    norm_type = norm_cfg['type']
    if isinstance(norm_type, type):
        layer = norm_type
    else:
        with MMENGINE_MODELS.switch_scope_and_registry(None) as registry:
            layer = registry.get(norm_type)
        if layer is None:
            raise ValueError(f'Unknown {name} type {norm_type!r} (scope {registry.scope!r}): '
                             "use a norm layer of mmengine's MODELS, e.g. 'BN', 'SyncBN', 'GN' "
                             "(with num_groups), 'LN', 'IN'")
    return isinstance(layer, type) and issubclass(layer, classes)


def _product(values):
    result = 1
    for value in values:
        result *= value
    return result
