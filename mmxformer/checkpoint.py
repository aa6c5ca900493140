"""Checkpoints: safe loading, key checks and conversion between tasks, publishing.

Checkpoints are pickles, and unpickling can run code. Since torch 2.6, ``torch.load`` defaults to
``weights_only=True``: only tensors, containers and allow-listed globals may be rebuilt. mmengine's
own checkpoints also hold its message hub (``HistoryBuffer`` objects with numpy arrays and
scalars), so a resume fails without help. :func:`install_safe_globals` (run when ``mmxformer`` is
imported) adds exactly those types to torch's allow-list; nothing here ever turns
``weights_only`` off.
"""
import datetime
import os
import os.path as osp
import pickle
from collections import OrderedDict

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.model.weight_init import PretrainedInit
from mmengine.optim.scheduler.param_scheduler import OneCycleParamScheduler
from mmengine.runner.checkpoint import CheckpointLoader

from .hub import file_sha256, temporary_path

try:  # numpy >= 2
    from numpy._core import multiarray
except ImportError:  # numpy 1.x
    from numpy.core import multiarray

# Functions that mmengine keeps on a class, pickled as ``getattr(cls, name)``: HistoryBuffer's
# statistics and OneCycle's annealing. The real ``getattr`` would let a pickle reach anything
# (``getattr(getattr, '__self__')`` is the builtins module), so only these pairs resolve.
PICKLED_CLASS_FUNCTIONS = (
    (HistoryBuffer, ('min', 'max', 'current', 'mean')),
    (OneCycleParamScheduler, ('_annealing_cos', '_annealing_linear')),
)

# The numeric dtypes of numpy arrays and scalars in a message hub: HistoryBuffer stores float64;
# metrics put their own scalars there (e.g. the best score of CheckpointHook(save_best=...), a
# np.float32 for mmseg's IoUMetric). A dtype carries no code: rebuilding one sets its byte order.
NUMPY_DTYPES = ('bool', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32', 'uint64',
                'float16', 'float32', 'float64')


def _class_function(owner, name):
    """``getattr`` as the unpickler sees it: only the pairs of :data:`PICKLED_CLASS_FUNCTIONS`."""
    for cls, names in PICKLED_CLASS_FUNCTIONS:
        if owner is cls and name in names:
            return getattr(cls, name)
    allowed = [f'{cls.__name__}.{attr}' for cls, attrs in PICKLED_CLASS_FUNCTIONS for attr in attrs]
    raise pickle.UnpicklingError(f'getattr({owner!r}, {name!r}) is refused: mmxformer only lets a '
                                 f'checkpoint look up {", ".join(allowed)}')


def _safe_globals():
    safe = [
        HistoryBuffer,
        OneCycleParamScheduler,
        np.ndarray,
        np.dtype,
        *(type(np.dtype(name)) for name in NUMPY_DTYPES),
        (_class_function, 'builtins.getattr'),
    ]
    # numpy 2 pickles these from numpy._core, numpy 1 from numpy.core: allow both names.
    for function in (multiarray._reconstruct, multiarray.scalar):
        for module in ('numpy._core.multiarray', 'numpy.core.multiarray'):
            safe.append((function, f'{module}.{function.__name__}'))
    return safe


#: What mmxformer adds to torch's ``weights_only`` allow-list: classes, or (object, pickled name).
SAFE_GLOBALS = _safe_globals()


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint needs something outside the allow-list to be unpickled."""


class PretrainedKeysError(ValueError):
    """A pretrained checkpoint does not hold the weights of the module it is loaded into."""


def install_safe_globals():
    """Add :data:`SAFE_GLOBALS` to torch's ``weights_only`` allow-list (idempotent: the list is a
    set). Every ``torch.load`` of the process benefits, including mmengine's ``resume``.

    Returns:
        bool: False where torch (< 2.4) has no allow-list to extend.
    """
    if not hasattr(torch.serialization, 'add_safe_globals'):
        return False
    torch.serialization.add_safe_globals(SAFE_GLOBALS)
    return True


def load_checkpoint_safely(path, map_location='cpu'):
    """``torch.load(path, weights_only=True)`` with mmxformer's allow-list installed.

    Args:
        path (str): A local checkpoint file.
        map_location (str | torch.device | dict | callable): As in :func:`torch.load`.
            Defaults to 'cpu'.

    Returns:
        The unpickled object, usually a dict with ``state_dict`` and ``meta``.

    Raises:
        UnsafeCheckpointError: Unpickling needs a global outside the allow-list (the file may be
            malicious, or come from an incompatible version). What was refused never ran.
    """
    install_safe_globals()
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise UnsafeCheckpointError(_refusal_message(path, error)) from None


def _refusal_message(path, error):
    # torch wraps the unpickler's reason in advice (turn weights_only off, allow-list the global)
    # that is not ours to give: keep the reason only.
    text = str(error).split('\n\nCheck the documentation')[0]
    reason = text.rsplit('WeightsUnpickler error:', 1)[-1].strip().split('\n\n')[-1].strip()
    reason = reason.split(' Please use `torch.serialization')[0]
    return (f'Refused to load {path}: {reason}\n'
            'A checkpoint is a pickle, and unpickling can run arbitrary code, so mmxformer loads '
            'it with torch.load(weights_only=True) and allows only tensors, containers, numpy '
            'arrays and scalars and the mmengine types of mmxformer.checkpoint.SAFE_GLOBALS. '
            'This file needs more: it may be malicious, or come from an incompatible version of '
            'mmengine, numpy or torch. Use it only if you trust its source, and then re-save its '
            "weights ('state_dict') from the environment that wrote it.")


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
    where = f" under the prefix '{_with_dot(prefix)}'" if prefix else ''
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
    prefix = _with_dot(prefix)
    selected = OrderedDict(
        (key[len(prefix):], value) for key, value in state_dict.items() if key.startswith(prefix))
    if not selected:
        raise PretrainedKeysError(
            f"No key of the checkpoint starts with '{prefix}'. It has {len(state_dict)} keys: "
            f'{_few(list(state_dict))}, under {_few(_top_prefixes(state_dict))}')
    return selected


def convert_checkpoint(src, dst, prefix='backbone.', keep_prefix=True):
    """Extract one part of a checkpoint (a classifier's backbone, by default) into a new file.

    The result holds only ``state_dict`` (no optimizer, scheduler or message hub), so it loads
    with torch's default allow-list. With ``keep_prefix`` it is used as
    ``init_cfg=dict(type='Pretrained', checkpoint=dst, prefix='backbone.')`` in detectors and
    segmentors, as the classifier's own file would be; without, it is used with no prefix.

    Args:
        src (str): The source checkpoint (a local file).
        dst (str): The file to write (atomically).
        prefix (str): The part to keep. Defaults to 'backbone.'.
        keep_prefix (bool): Keep ``prefix`` in the keys. Defaults to True.

    Returns:
        dict: The state dict written.
    """
    part = strip_prefix(read_state_dict(src), prefix)
    if keep_prefix:
        part = OrderedDict((_with_dot(prefix) + key, value) for key, value in part.items())
    save_atomically(dict(state_dict=part, meta=dict(converted_from=osp.basename(src))), dst)
    return part


def publish_checkpoint(src, out_dir, name, ema=False, date=None):
    """Write a training checkpoint as a release file, ``<name>_<YYYYMMDD>-<sha256[:8]>.pth``.

    Optimizer, scheduler and message hub are dropped; ``state_dict`` and ``meta`` remain.
    With mmengine's ``EMAHook`` the checkpoint's ``state_dict`` already holds the EMA weights
    and ``ema_state_dict`` the raw ones (under ``module.``): the hook swaps them when saving.

    Args:
        src (str): The training checkpoint.
        out_dir (str): Where to write the release file.
        name (str): Model name, the start of the file name.
        ema (bool): Publish the EMA weights (the checkpoint must come from a run with
            ``EMAHook``); otherwise the raw weights. Defaults to False.
        date (datetime.date, optional): The date in the name. Defaults to today.

    Returns:
        tuple[str, str]: The path written and its SHA-256.
    """
    if not name or osp.basename(name) != name:
        raise ValueError(f'name must be a plain file name without directories, got {name!r}')
    name = name[:-len('.pth')] if name.endswith('.pth') else name
    checkpoint = load_checkpoint_safely(src)
    if 'state_dict' not in checkpoint:
        raise ValueError(f"{src} has no 'state_dict': it holds {sorted(checkpoint)}. "
                         'Publish the checkpoint of a training run.')
    state_dict = OrderedDict(checkpoint['state_dict'])
    has_ema = 'ema_state_dict' in checkpoint
    if ema and not has_ema:
        raise ValueError(f"{src} has no EMA weights ('ema_state_dict'): it was not trained with "
                         "EMAHook. Publish it without --ema.")
    if has_ema and not ema:
        state_dict.update(
            (key[len('module.'):], value) for key, value in checkpoint['ema_state_dict'].items()
            if key.startswith('module.'))
    release = dict(state_dict=state_dict, meta=dict(checkpoint.get('meta', {}), ema=ema))
    os.makedirs(out_dir, exist_ok=True)
    date = date or datetime.date.today()
    with temporary_path(out_dir, f'.{name}.', '.pth') as tmp:
        torch.save(release, tmp)
        sha256 = file_sha256(tmp)
        path = osp.join(out_dir, f'{name}_{date:%Y%m%d}-{sha256[:8]}.pth')
        os.replace(tmp, path)
    return path, sha256


def save_atomically(obj, path):
    """``torch.save`` to a temporary file next to ``path``, then rename: never half-written."""
    directory = osp.dirname(osp.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with temporary_path(directory, f'.{osp.basename(path)}.', '.tmp') as tmp:
        torch.save(obj, tmp)
        os.replace(tmp, path)


def _with_dot(prefix):
    return prefix if prefix.endswith('.') else prefix + '.'


def _top_prefixes(state_dict):
    return sorted({key.split('.')[0] + '.' for key in state_dict})


def _few(items, count=5):
    shown = ', '.join(repr(item) for item in items[:count])
    return shown + (', ...' if len(items) > count else '')
