"""Loading checkpoints without running code from them.

Checkpoints are pickles, and unpickling can run code. ``torch.load(weights_only=True)`` rebuilds
only tensors, containers and allow-listed globals; mmxformer always passes it explicitly, so that
no environment variable or default of torch can turn it off. mmengine's own checkpoints also hold
its message hub (``HistoryBuffer`` objects with numpy arrays and scalars), so a resume needs a few
more globals: :func:`install_safe_globals` (run by ``import mmxformer``) adds exactly those to
torch's allow-list.
"""
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


#: What mmxformer adds to torch's ``weights_only`` allow-list: classes, or (object, pickled name).
SAFE_GLOBALS = _safe_globals()


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint needs something outside the allow-list to be unpickled."""


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
