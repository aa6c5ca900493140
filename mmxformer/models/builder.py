"""Building the token mixer of a transformer layer from mmxformer's registry."""
import difflib
import inspect
from typing import List

import torch.nn as nn

from mmxformer.registry import MODELS


def attention_types() -> List[str]:
    """The names of mmxformer's registry that :func:`build_attention` builds: the modules that
    take ``embed_dims`` (the backbone, also registered there, does not)."""
    return sorted(name for name, cls in MODELS.module_dict.items()
                  if 'embed_dims' in inspect.signature(cls).parameters)


def build_attention(cfg: dict, embed_dims: int) -> nn.Module:
    """Build an attention from mmxformer's registry, whatever the current default scope.

    ``MODELS.build`` would switch to the registry of the config's ``default_scope`` (mmdet's, for
    a detector); looking the type up in mmxformer's own registry does not depend on it.

    Args:
        cfg (dict): ``type`` (a registered name or a class) and the attention's arguments.
        embed_dims (int): Channels of the tokens, passed to the attention.

    Returns:
        nn.Module: the attention.

    Raises:
        TypeError: ``cfg`` is not a dict with a ``type``, the type is not a module that takes
            ``embed_dims``, or ``cfg`` has an argument the type does not take.
        KeyError: The type is not registered.
        ValueError: ``cfg`` sets ``embed_dims``, which the caller passes.
    """
    example = "e.g. dict(type='CrossFeatureAttention')"
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise TypeError(f"attn_cfg must be a dict with a 'type', one of {attention_types()} "
                        f'({example}), got {cfg!r}')
    cfg = dict(cfg)
    attn_type = cfg.pop('type')
    cls = MODELS.get(attn_type) if isinstance(attn_type, str) else attn_type
    if cls is None:
        raise KeyError(f'Unknown attention type {attn_type!r}; mmxformer has '
                       f'{attention_types()}')
    is_module = isinstance(cls, type) and issubclass(cls, nn.Module)
    parameters = inspect.signature(cls).parameters if is_module else {}
    if 'embed_dims' not in parameters:
        raise TypeError(f'attn_cfg type {attn_type!r} is not an attention (a module that takes '
                        f'embed_dims); use one of {attention_types()}, {example}')
    if 'embed_dims' in cfg:
        raise ValueError(f'attn_cfg sets embed_dims={cfg["embed_dims"]!r}: leave it out, each '
                         "XF block passes its own (the arch's embed_dims)")
    takes_any = any(p.kind == p.VAR_KEYWORD for p in parameters.values())
    unknown = [key for key in cfg if key not in parameters]
    if unknown and not takes_any:
        names = [name for name in parameters if name != 'embed_dims']
        close = difflib.get_close_matches(unknown[0], names, n=1)
        hint = f' (did you mean {close[0]!r}?)' if close else ''
        raise TypeError(f'attn_cfg: {cls.__name__} takes no argument {unknown[0]!r}{hint}; it '
                        f'takes {names}')
    return cls(embed_dims=embed_dims, **cfg)
