"""Loading checkpoints without running code from them.

Checkpoints are pickles, and unpickling can run code. ``torch.load(weights_only=True)`` rebuilds
only tensors, containers and allow-listed globals; mmxformer always passes it explicitly, so that
no environment variable or default of torch can turn it off. mmengine's own checkpoints also hold
its message hub (``HistoryBuffer`` objects with numpy arrays and scalars), so a resume needs a few
more globals: :mod:`~mmxformer.checkpoint.safe_globals` lists exactly those, and
:mod:`~mmxformer.checkpoint.weights_only` loads with that list on every supported torch.

Unpickled safely, a checkpoint may still carry code as text: the config mmengine stores in it,
which mmengine's inferencers and resume run through ``Config.fromstring``. Every checkpoint loaded
here has that text checked as data (:func:`check_stored_configs`).
"""
import os
import pickle

import torch

from .stored_config import ConfigTextError, check_config_text
from .weights_only import load_weights_only

# How torch.save's files begin: a zip archive (torch >= 1.6), or the legacy format, whose first
# pickle is torch's magic number (protocol 2 unless the caller chose another).
ZIP_MAGIC = b'PK\x03\x04'
LEGACY_MAGICS = tuple(
    pickle.dumps(torch.serialization.MAGIC_NUMBER, protocol=protocol)
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1))
HEAD_SIZE = 512
IMAGE_MAGICS = ((b'\xff\xd8\xff', 'JPEG'), (b'\x89PNG\r\n\x1a\n', 'PNG'))

#: Where checkpoints keep config texts that mmengine's code runs with ``Config.fromstring``: the
#: runner saves ``meta['cfg']``; its resume reads ``meta['config']``; the inferencers read the
#: message hub's ``cfg`` first, then ``meta['cfg']``.
STORED_CONFIGS = (('meta', 'cfg'), ('meta', 'config'), ('message_hub', 'runtime_info', 'cfg'))
#: Meta data that mmengine and the toolboxes index as dicts: anything else ended in a TypeError
#: or AttributeError deep inside them (``DetInferencer``, ``init_detector``, resume).
META_DICTS = (
    ('meta', ),
    ('meta', 'dataset_meta'),
    ('message_hub', ),
    ('message_hub', 'runtime_info'),
)
_MISSING = object()


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint needs something outside the allow-list to be unpickled."""


class NotACheckpointError(ValueError):
    """A file that is not a PyTorch checkpoint: not written by ``torch.save``, or no dict."""


class UnsafeConfigError(UnsafeCheckpointError):
    """A checkpoint stores a config text that is not only data (see
    :mod:`mmxformer.checkpoint.stored_config`)."""


def load_checkpoint_safely(file, map_location='cpu', source=None):
    """``torch.load(file, weights_only=True)`` with mmxformer's allow-list (on any torch: see
    :func:`~mmxformer.checkpoint.weights_only.load_weights_only`), for files
    written by ``torch.save`` that hold a dict (a state dict, or a checkpoint with one).

    The file's first bytes are checked before anything is unpickled, so that a web page, a text
    or an image is named for what it is rather than reported as an unpickling failure.

    Args:
        file (str | os.PathLike | file-like): A local checkpoint file, or a binary file object.
        map_location (str | torch.device | dict | callable): As in :func:`torch.load`.
            Defaults to 'cpu'.
        source (str, optional): What the messages call the file (e.g. its URL). Defaults to
            ``file`` (a path) or its ``name``.

    Returns:
        dict: The unpickled checkpoint, usually with ``state_dict`` and ``meta``.

    Raises:
        NotACheckpointError: The file was not written by ``torch.save``, is damaged, or does not
            hold a dict.
        UnsafeCheckpointError: Unpickling needs a global outside the allow-list (the file may be
            malicious, or come from an incompatible version). What was refused never ran.
        UnsafeConfigError: The config text the checkpoint stores is not only data.
    """
    if isinstance(file, os.PathLike):
        file = os.fspath(file)
    source = source or (file if isinstance(file, str) else getattr(file, 'name', repr(file)))
    _check_format(file, source)
    try:
        checkpoint = load_weights_only(file, map_location)
    except pickle.UnpicklingError as error:
        raise UnsafeCheckpointError(_refusal_message(source, error)) from None
    except (RuntimeError, EOFError) as error:  # torch's reader: a damaged or foreign archive
        raise NotACheckpointError(
            f'{source} is not a readable PyTorch checkpoint (truncated, damaged, or a zip '
            f'archive of something else): {error}') from None
    if not isinstance(checkpoint, dict):
        raise NotACheckpointError(
            f'{source} holds a {type(checkpoint).__name__}, not a checkpoint: a checkpoint is a '
            "dict of weights (a state dict) or a dict with a 'state_dict' key")
    check_stored_configs(checkpoint, source)
    return checkpoint


def check_stored_configs(checkpoint: dict, source: str) -> None:
    """Check the meta data that mmengine and the toolboxes index as dicts
    (:data:`META_DICTS`), and the config texts of :data:`STORED_CONFIGS` with
    :func:`~mmxformer.checkpoint.stored_config.check_config_text`.

    Args:
        checkpoint (dict): An unpickled checkpoint.
        source (str): What the messages call the file.

    Raises:
        NotACheckpointError: A value of :data:`META_DICTS` is not a dict.
        UnsafeConfigError: A stored config text is not only data.
    """
    for path in META_DICTS:
        value = _lookup(checkpoint, path)
        # A plain state dict may have a weight named 'meta': that is no meta data.
        is_weight = len(path) == 1 and isinstance(value, torch.Tensor)
        if value is _MISSING or isinstance(value, dict) or is_weight:
            continue
        where = _where(path)
        raise NotACheckpointError(
            f'{source}: its {where} is a {type(value).__name__}, not a dict, and the code of '
            f'mmengine and the toolboxes indexes it as one; re-save the file without {where}, '
            'or with a dict there')
    for path in STORED_CONFIGS:
        text = _lookup(checkpoint, path)
        if text is _MISSING:
            continue
        try:
            check_config_text(text)
        except ConfigTextError as error:
            raise UnsafeConfigError(_config_refusal(source, _where(path), error)) from None


def _lookup(checkpoint, path):
    """The value at ``path`` (keys of nested dicts); :data:`_MISSING` where a key is missing or
    a value on the way is no dict."""
    value = checkpoint
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return _MISSING
        value = value[key]
    return value


def _where(path):
    return path[0] + ''.join(f'[{key!r}]' for key in path[1:])


def _config_refusal(source, where, reason):
    return (f'Refused to load {source}: the config text it stores in {where} {reason}. '
            'mmengine runs that text as Python (Config.fromstring), so mmxformer accepts there '
            'only data as mmengine writes it (NAME = literals, dict(...), lists, tuples and sets, '
            'types its registries know). Give the model\'s config file instead of the stored one '
            '(e.g. DetInferencer(model=CONFIG, weights=...)) and, if you trust the file, delete '
            f'{where} from it (torch.load(..., weights_only=True), del, torch.save).')


def _check_format(file, source):
    """Raise :class:`NotACheckpointError` unless ``file`` starts as torch.save's files do."""
    if isinstance(file, str):
        with open(file, 'rb') as f:
            head = f.read(HEAD_SIZE)
    else:
        position = file.tell()
        head = file.read(HEAD_SIZE)
        file.seek(position)
    if head.startswith(ZIP_MAGIC) or head.startswith(LEGACY_MAGICS):
        return
    raise NotACheckpointError(f'{source} is not a PyTorch checkpoint (a file written by '
                              f'torch.save): {_describe(head)}')


def _describe(head):
    if not head:
        return 'the file is empty'
    if head.lstrip()[:1] == b'<':
        return 'it looks like HTML or XML (a web page saved instead of the file?)'
    for magic, kind in IMAGE_MAGICS:
        if head.startswith(magic):
            return f'it is a {kind} image'
    if head.startswith(b'\x80'):
        return 'it is a pickle, but not one written by torch.save'
    if head.isascii():
        return 'it is text'
    return f'it starts with the bytes {head[:8]!r}'


def _refusal_message(source, error):
    # torch wraps the unpickler's reason in advice (turn weights_only off, allow-list the global)
    # that is not ours to give: keep the reason only.
    text = str(error).split('\n\nCheck the documentation')[0]
    reason = text.rsplit('WeightsUnpickler error:', 1)[-1].strip().split('\n\n')[-1].strip()
    reason = reason.split(' Please use `torch.serialization')[0]
    return (f'Refused to load {source}: {reason}\n'
            'A checkpoint is a pickle, and unpickling can run arbitrary code, so mmxformer loads '
            'it with torch.load(weights_only=True) and allows only tensors, containers, numpy '
            'arrays and scalars and the mmengine types of '
            'mmxformer.checkpoint.safe_globals.SAFE_GLOBALS. '
            'This file needs more: it may be malicious, or come from an incompatible version of '
            'mmengine, numpy or torch. Use it only if you trust its source, and then re-save its '
            "weights ('state_dict') from the environment that wrote it.")
