"""The globals a safe checkpoint may hold beyond torch's: what mmengine's own checkpoints need.

mmengine's checkpoints hold its message hub (``HistoryBuffer`` objects with numpy arrays and
scalars) and its schedulers' state, so a resume needs a few globals more than tensors and
containers. :data:`SAFE_GLOBALS` lists exactly those; :func:`install_safe_globals` (run by
``import mmxformer``) adds them to torch's ``weights_only`` allow-list (torch >= 2.4), and
:mod:`mmxformer.checkpoint.weights_only` enforces the same list where torch has none.
"""
import pickle

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.optim.scheduler.param_scheduler import OneCycleParamScheduler

# numpy 2 renamed numpy.core numpy._core (numpy 1.26 has a shim of the new name, not imported
# unless asked for: a guest does not import it for the host)
if np.lib.NumpyVersion(np.__version__) >= '2.0.0':
    from numpy._core import multiarray
else:
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


def pickled_name(entry) -> str:
    """The name under which a pickle refers to an entry of :data:`SAFE_GLOBALS`, as torch's
    allow-list keys it: the given name of an (object, name) pair, else ``module.qualname``."""
    if isinstance(entry, tuple):
        return entry[1]
    return f'{entry.__module__}.{entry.__qualname__}'


def install_safe_globals() -> bool:
    """Add :data:`SAFE_GLOBALS` to torch's ``weights_only`` allow-list (idempotent: the list is a
    set). Every ``torch.load`` of the process benefits, including mmengine's ``resume``.

    Returns:
        bool: False where torch (< 2.4) has no allow-list to extend; mmxformer's loaders then
        enforce the same list themselves (:mod:`~mmxformer.checkpoint.weights_only`).
    """
    if not hasattr(torch.serialization, 'add_safe_globals'):
        return False
    torch.serialization.add_safe_globals(SAFE_GLOBALS)
    return True
