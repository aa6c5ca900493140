"""Loading checkpoints without running code from them.

Checkpoints are pickles, and unpickling can run code. ``torch.load(weights_only=True)`` rebuilds
only tensors, containers and allow-listed globals; mmxformer always passes it explicitly, so that
no environment variable or default of torch can turn it off. mmengine's own checkpoints also hold
its message hub (``HistoryBuffer`` objects with numpy arrays and scalars), so a resume needs a few
more globals: :func:`install_safe_globals` (run by ``import mmxformer``) adds exactly those to
torch's allow-list.
"""
import os
import pickle

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.optim.scheduler.param_scheduler import OneCycleParamScheduler

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


# How torch.save's files begin: a zip archive (torch >= 1.6), or the legacy format, whose first
# pickle is torch's magic number (protocol 2 unless the caller chose another).
ZIP_MAGIC = b'PK\x03\x04'
LEGACY_MAGICS = tuple(
    pickle.dumps(torch.serialization.MAGIC_NUMBER, protocol=protocol)
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1))
HEAD_SIZE = 512
IMAGE_MAGICS = ((b'\xff\xd8\xff', 'JPEG'), (b'\x89PNG\r\n\x1a\n', 'PNG'))

#: What mmxformer adds to torch's ``weights_only`` allow-list: classes, or (object, pickled name).
SAFE_GLOBALS = _safe_globals()


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint needs something outside the allow-list to be unpickled."""


class NotACheckpointError(ValueError):
    """A file that is not a PyTorch checkpoint: not written by ``torch.save``, or no dict."""


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


def load_checkpoint_safely(file, map_location='cpu', source=None):
    """``torch.load(file, weights_only=True)`` with mmxformer's allow-list installed, for files
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
    """
    if isinstance(file, os.PathLike):
        file = os.fspath(file)
    source = source or (file if isinstance(file, str) else getattr(file, 'name', repr(file)))
    _check_format(file, source)
    install_safe_globals()
    try:
        checkpoint = torch.load(file, map_location=map_location, weights_only=True)
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
    return checkpoint


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
    return (
        f'Refused to load {source}: {reason}\n'
        'A checkpoint is a pickle, and unpickling can run arbitrary code, so mmxformer loads '
        'it with torch.load(weights_only=True) and allows only tensors, containers, numpy '
        'arrays and scalars and the mmengine types of mmxformer.checkpoint.safe_load.SAFE_GLOBALS. '
        'This file needs more: it may be malicious, or come from an incompatible version of '
        'mmengine, numpy or torch. Use it only if you trust its source, and then re-save its '
        "weights ('state_dict') from the environment that wrote it.")
