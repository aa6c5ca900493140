"""State dicts of checkpoints: reading them, selecting a prefix, checking that they fit a model,
loading them into one.
"""
import os.path as osp
from collections import OrderedDict

from mmengine.model.weight_init import PretrainedInit
from mmengine.registry import WEIGHT_INITIALIZERS
from mmengine.runner.checkpoint import CheckpointLoader

from .safe_globals import install_safe_globals
from .safe_load import load_checkpoint_safely

#: The prefix DistributedDataParallel puts before every key of the model it wraps.
DDP_PREFIX = 'module.'


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


def check_pretrained_keys(module, checkpoint, prefix=None, allow_unexpected=False):
    """Check that a checkpoint holds every weight of ``module``, with the right shapes, and
    nothing else.

    mmengine's ``Pretrained`` initialisation loads with ``strict=False``: a checkpoint whose keys
    do not fit loads nothing, or only a part, and says so only in a log line. This check fails
    loudly instead. Keys outside ``prefix`` (a classifier's head when the backbone is loaded) do
    not count; under it, a key the module lacks is an error unless ``allow_unexpected`` says
    otherwise (the weights of another attention, say, would otherwise be dropped in silence).

    Args:
        module (nn.Module): The module the checkpoint is loaded into (a backbone or a whole
            model).
        checkpoint (str | dict): As in :func:`read_state_dict`.
        prefix (str, optional): As ``prefix`` of ``init_cfg=dict(type='Pretrained', ...)``:
            only keys starting with it count, and it is removed from them. Defaults to None.
        allow_unexpected (bool | Sequence[str]): Keys of the checkpoint (after ``prefix``) that
            the module lacks: an error with False, ignored with True; a sequence of key prefixes
            ignores the keys that start with one of them (parts the module does not build, such
            as :attr:`XFormer.unbuilt_prefixes`). Defaults to False.

    Returns:
        list[str]: The module's keys found in the checkpoint.

    Raises:
        PretrainedKeysError: Some of the module's weights are missing or have other shapes, or
            the checkpoint has weights the module lacks.
    """
    source = checkpoint if isinstance(checkpoint, str) else 'the checkpoint'
    return list(
        fitting_weights(module, read_state_dict(checkpoint), prefix, allow_unexpected, source))


def load_pretrained(module, checkpoint, prefix=None, map_location='cpu', allow_unexpected=False):
    """Load the weights of a checkpoint into ``module`` once :func:`check_pretrained_keys` has
    found that they fit: mmengine's ``Pretrained`` initialisation, without its silence on keys
    that do not fit, and through :func:`read_state_dict` (never a ``torch.load`` that could run
    code).

    Args:
        module (nn.Module): The module to load into.
        checkpoint (str | dict): As in :func:`read_state_dict`.
        prefix (str, optional): As in :func:`check_pretrained_keys`. Defaults to None.
        map_location: As in :func:`torch.load`. Defaults to 'cpu'.
        allow_unexpected (bool | Sequence[str]): As in :func:`check_pretrained_keys`.
            Defaults to False.

    Returns:
        list[str]: The keys loaded.

    Raises:
        PretrainedKeysError: As :func:`check_pretrained_keys`; then nothing is loaded.
    """
    source = checkpoint if isinstance(checkpoint, str) else 'the checkpoint'
    weights = fitting_weights(module, read_state_dict(checkpoint, map_location), prefix,
                              allow_unexpected, source)
    # not strict: BN's num_batches_tracked may be absent, and is only a counter
    module.load_state_dict(weights, strict=False)
    return list(weights)


def fitting_weights(module,
                    state_dict,
                    prefix=None,
                    allow_unexpected=False,
                    source='the checkpoint'):
    """The weights of ``state_dict`` for ``module``, once checked as
    :func:`check_pretrained_keys` says.

    Args:
        module (nn.Module): The module the weights are for.
        state_dict (dict): A state dict (the weights of a checkpoint).
        prefix (str, optional): As in :func:`check_pretrained_keys`. Defaults to None.
        allow_unexpected (bool | Sequence[str]): As in :func:`check_pretrained_keys`.
            Defaults to False.
        source (str): What the state dict came from, for the messages. Defaults to
            'the checkpoint'.

    Returns:
        OrderedDict: The module's keys (BN's ``num_batches_tracked`` where the checkpoint has
        it) and the checkpoint's values.

    Raises:
        PretrainedKeysError: As :func:`check_pretrained_keys`.
    """
    weights = strip_prefix(state_dict, prefix) if prefix else state_dict
    model_state = module.state_dict()
    expected = {
        key: value.shape
        for key, value in model_state.items() if not key.endswith('num_batches_tracked')
    }
    missing = [key for key in expected if key not in weights]
    mismatched = [
        f'{key}: {tuple(weights[key].shape)} in the checkpoint, {tuple(shape)} in the model'
        for key, shape in expected.items()
        if key in weights and tuple(weights[key].shape) != tuple(shape)
    ]
    unexpected = [
        key for key in weights if key not in model_state and not _allowed(key, allow_unexpected)
    ]
    if missing or mismatched or unexpected:
        raise PretrainedKeysError(
            _misfit_message(module, state_dict, prefix, source, expected, missing, mismatched,
                            unexpected))
    return OrderedDict((key, weights[key]) for key in model_state if key in weights)


def _allowed(key, allow_unexpected):
    if isinstance(allow_unexpected, bool):
        return allow_unexpected
    return key.startswith(tuple(allow_unexpected))


def _misfit_message(module, state_dict, prefix, source, expected, missing, mismatched, unexpected):
    where = f" under the prefix '{with_trailing_dot(prefix)}'" if prefix else ''
    fitting = len(expected) - len(missing) - len(mismatched)
    name = type(module).__name__
    lines = [
        f'{source} does not fit {name}: {fitting} of its {len(expected)} weights found'
        f'{where} with the right shape' +
        (f', and {len(unexpected)} weights it lacks.' if unexpected else '.')
    ]
    if missing:
        lines.append(f'Missing ({len(missing)}): {_few(missing)}')
    if mismatched:
        lines.append(f'Other shapes ({len(mismatched)}): {"; ".join(mismatched[:3])}')
    if unexpected:
        lines.append(f'Not in {name} ({len(unexpected)}): {_few(unexpected)}')
    lines.append(f'The checkpoint has {len(state_dict)} keys: {_few(list(state_dict))}, under '
                 f'{_few(_top_prefixes(state_dict))}')
    saved_by_ddp = all(key.startswith(DDP_PREFIX) for key in state_dict)
    if saved_by_ddp and not (prefix or '').startswith(DDP_PREFIX):
        lines.append(_ddp_hint(prefix))
    elif _any_end(missing, '.bn.weight') and _any_end(unexpected, '.conv.bias'):
        lines.append('The checkpoint has biased convs where the model has conv + BatchNorm: it '
                     'was converted for deployment (switch_to_deploy()); build the model with '
                     'deploy=True (model.backbone.deploy=True in a config).')
    elif _any_end(unexpected, '.bn.weight') and _any_end(missing, '.conv.bias'):
        lines.append('The model has biased convs where the checkpoint has conv + BatchNorm: it '
                     'was built with deploy=True; load the checkpoint with deploy=False, then '
                     'call switch_to_deploy() (or convert it first).')
    else:
        lines.append("A classifier's checkpoint keeps the backbone under 'backbone.' (use "
                     "prefix='backbone.'); a backbone-only one has no prefix. Check also that "
                     'the arch and attn_cfg are those the checkpoint was trained with.')
    return '\n'.join(lines)


def _ddp_hint(prefix):
    wanted = DDP_PREFIX + (with_trailing_dot(prefix) if prefix else '')
    return (f"All its keys start with '{DDP_PREFIX}': it was saved from a model wrapped in "
            f"DistributedDataParallel. Use prefix='{wanted}' (prefix='{DDP_PREFIX}backbone.' "
            f'for the backbone of a classifier), or strip the prefix once: '
            f"mmxformer.apis.convert_checkpoint(SRC, DST, prefix='{DDP_PREFIX}', "
            'keep_prefix=False).')


def _any_end(keys, suffix):
    return any(key.endswith(suffix) for key in keys)


def is_pretrained_init(cfg):
    """Whether an entry of an ``init_cfg`` loads a checkpoint: its type resolves, through
    mmengine's ``WEIGHT_INITIALIZERS``, to ``PretrainedInit`` or a subclass, however it is
    spelled (``'Pretrained'``, ``'mmengine.Pretrained'``, the class itself).

    Args:
        cfg: An entry of an ``init_cfg`` (a dict; anything else is not one).

    Returns:
        bool
    """
    if not isinstance(cfg, dict):
        return False
    init_type = cfg.get('type')
    cls = WEIGHT_INITIALIZERS.get(init_type) if isinstance(init_type, str) else init_type
    return isinstance(cls, type) and issubclass(cls, PretrainedInit)


def pretrained_init_cfgs(init_cfg):
    """The entries of an ``init_cfg`` (a dict, a list of them, or None) that load a checkpoint
    (see :func:`is_pretrained_init`), and the others.

    Returns:
        tuple[list[dict], list]: The ``Pretrained`` entries, and the others in their order.
    """
    cfgs = init_cfg if isinstance(init_cfg, list) else [init_cfg] if init_cfg else []
    pretrained = [cfg for cfg in cfgs if is_pretrained_init(cfg)]
    return pretrained, [cfg for cfg in cfgs if not is_pretrained_init(cfg)]


def check_pretrained_init(module, allow_unexpected=None):
    """Run :func:`check_pretrained_keys` for each ``Pretrained`` entry of ``module.init_cfg``
    (nothing when there is none): for a module that mmengine's ``Pretrained`` initialisation
    loaded, after its ``init_weights``.

    Args:
        module (nn.Module): A module with an ``init_cfg``.
        allow_unexpected (bool | Sequence[str], optional): As in :func:`check_pretrained_keys`.
            Defaults to the module's ``unbuilt_prefixes`` where it has them (XFormer's stages
            after the last output), else False.
    """
    if allow_unexpected is None:
        allow_unexpected = getattr(module, 'unbuilt_prefixes', False)
    for cfg in pretrained_init_cfgs(module.init_cfg)[0]:
        check_pretrained_keys(module, cfg['checkpoint'], cfg.get('prefix'), allow_unexpected)


def strip_prefix(state_dict, prefix):
    """The entries of ``state_dict`` under ``prefix``, with the prefix removed.

    Raises:
        PretrainedKeysError: No key starts with ``prefix``.
    """
    prefix = with_trailing_dot(prefix)
    selected = OrderedDict(
        (key[len(prefix):], value) for key, value in state_dict.items() if key.startswith(prefix))
    if not selected:
        lines = [
            f"No key of the checkpoint starts with '{prefix}'. It has {len(state_dict)} "
            f'keys: {_few(list(state_dict))}, under {_few(_top_prefixes(state_dict))}'
        ]
        if any(key.startswith(DDP_PREFIX + prefix) for key in state_dict):
            lines.append(_ddp_hint(prefix))
        raise PretrainedKeysError('\n'.join(lines))
    return selected


def with_trailing_dot(prefix):
    """``prefix`` ending with one dot, as state dict keys join their parts."""
    return prefix if prefix.endswith('.') else prefix + '.'


def _top_prefixes(state_dict):
    return sorted({key.split('.')[0] + '.' for key in state_dict})


def _few(items, count=5):
    shown = ', '.join(repr(item) for item in items[:count])
    return shown + (', ...' if len(items) > count else '')
