"""State dicts of checkpoints: reading them, selecting a prefix, checking that they fit a model.
"""
import os.path as osp
from collections import OrderedDict

from mmengine.model.weight_init import PretrainedInit
from mmengine.runner.checkpoint import CheckpointLoader

from .safe_load import install_safe_globals, load_checkpoint_safely


class PretrainedKeysError(ValueError):
    """A pretrained checkpoint does not hold the weights of the module it is loaded into."""


def read_state_dict(checkpoint, map_location='cpu'):
    """The state dict of a checkpoint.

    Args:
        checkpoint (str | dict): A local file (loaded with :func:`load_checkpoint_safely`), a URL
            or other mmengine checkpoint path, or an already loaded checkpoint.
        map_location: As in :func:`torch.load`. Defaults to 'cpu'.

    Returns:
        dict: ``checkpoint['state_dict']`` if present, else the checkpoint itself.
    """
    if isinstance(checkpoint, str):
        if osp.isfile(osp.expanduser(checkpoint)):
            checkpoint = load_checkpoint_safely(osp.expanduser(checkpoint), map_location)
        else:
            install_safe_globals()
            checkpoint = CheckpointLoader.load_checkpoint(checkpoint, map_location)
    if not isinstance(checkpoint, dict):
        raise TypeError(f'A checkpoint must be a dict (a state dict, or one with a '
                        f"'state_dict' key), got {type(checkpoint).__name__}")
    return checkpoint.get('state_dict', checkpoint)


def check_pretrained_keys(module, checkpoint, prefix=None):
    """Check that a checkpoint holds every weight of ``module``, with the right shapes.

    mmengine's ``Pretrained`` initialisation loads with ``strict=False``: a checkpoint whose keys
    do not fit loads nothing, and says so only in a log line. Call this after it, so a wrong
    checkpoint fails loudly instead. Keys of the checkpoint that the module lacks (a classifier's
    head, stages a detector does not build) are fine.

    Args:
        module (nn.Module): The module the checkpoint is loaded into.
        checkpoint (str | dict): As in :func:`load_state_dict`.
        prefix (str, optional): As ``prefix`` of ``init_cfg=dict(type='Pretrained', ...)``:
            only keys starting with it count, and it is removed from them. Defaults to None.

    Returns:
        list[str]: The module's keys found in the checkpoint.

    Raises:
        PretrainedKeysError: Some of the module's weights are missing or have other shapes.
    """
    source = checkpoint if isinstance(checkpoint, str) else 'the checkpoint'
    state_dict = read_state_dict(checkpoint)
    weights = strip_prefix(state_dict, prefix) if prefix else state_dict
    expected = {
        key: value.shape
        for key, value in module.state_dict().items() if not key.endswith('num_batches_tracked')
    }
    missing = [key for key in expected if key not in weights]
    mismatched = [
        f'{key}: {tuple(weights[key].shape)} in the checkpoint, {tuple(shape)} in the model'
        for key, shape in expected.items()
        if key in weights and tuple(weights[key].shape) != tuple(shape)
    ]
    if not missing and not mismatched:
        return list(expected)
    where = f" under the prefix '{with_trailing_dot(prefix)}'" if prefix else ''
    fitting = len(expected) - len(missing) - len(mismatched)
    lines = [f'{source} does not fit {type(module).__name__}: {fitting} of its {len(expected)} '
             f'weights found{where} with the right shape.']
    if missing:
        lines.append(f'Missing ({len(missing)}): {_few(missing)}')
    if mismatched:
        lines.append(f'Other shapes ({len(mismatched)}): {"; ".join(mismatched[:3])}')
    lines.append(f'The checkpoint has {len(state_dict)} keys: {_few(list(state_dict))}, under '
                 f'{_few(_top_prefixes(state_dict))}')
    lines.append("A classifier's checkpoint keeps the backbone under 'backbone.' (use "
                 "prefix='backbone.'); a backbone-only one has no prefix. Check also that the "
                 'arch and attn_cfg are those the checkpoint was trained with.')
    raise PretrainedKeysError('\n'.join(lines))


def check_pretrained_init(module):
    """Run :func:`check_pretrained_keys` for each ``Pretrained`` entry of ``module.init_cfg``
    (nothing when there is none). Call it at the end of ``init_weights``."""
    init_cfgs = module.init_cfg if isinstance(module.init_cfg, list) else [module.init_cfg]
    for cfg in init_cfgs:
        if isinstance(cfg, dict) and cfg.get('type') in ('Pretrained', PretrainedInit):
            check_pretrained_keys(module, cfg['checkpoint'], cfg.get('prefix'))


def strip_prefix(state_dict, prefix):
    """The entries of ``state_dict`` under ``prefix``, with the prefix removed.

    Raises:
        PretrainedKeysError: No key starts with ``prefix``.
    """
    prefix = with_trailing_dot(prefix)
    selected = OrderedDict(
        (key[len(prefix):], value) for key, value in state_dict.items() if key.startswith(prefix))
    if not selected:
        raise PretrainedKeysError(
            f"No key of the checkpoint starts with '{prefix}'. It has {len(state_dict)} keys: "
            f'{_few(list(state_dict))}, under {_few(_top_prefixes(state_dict))}')
    return selected


def with_trailing_dot(prefix):
    """``prefix`` ending with one dot, as state dict keys join their parts."""
    return prefix if prefix.endswith('.') else prefix + '.'


def _top_prefixes(state_dict):
    return sorted({key.split('.')[0] + '.' for key in state_dict})


def _few(items, count=5):
    shown = ', '.join(repr(item) for item in items[:count])
    return shown + (', ...' if len(items) > count else '')
