"""Building the token mixer of a transformer layer from mmxformer's registry."""
import torch.nn as nn

from mmxformer.registry import MODELS


def build_attention(cfg: dict, embed_dims: int) -> nn.Module:
    """Build an attention from mmxformer's registry, whatever the current default scope.

    ``MODELS.build`` would switch to the registry of the config's ``default_scope`` (mmdet's, for
    a detector); looking the type up in mmxformer's own registry does not depend on it.

    Args:
        cfg (dict): ``type`` (a registered name or a class) and the attention's arguments.
        embed_dims (int): Channels of the tokens, passed to the attention.

    Returns:
        nn.Module: the attention.
    """
    cfg = dict(cfg)
    attn_type = cfg.pop('type')
    cls = MODELS.get(attn_type) if isinstance(attn_type, str) else attn_type
    if cls is None:
        raise KeyError(f'Unknown attention type {attn_type!r}; mmxformer has '
                       f'{sorted(MODELS.module_dict)}')
    return cls(embed_dims=embed_dims, **cfg)
