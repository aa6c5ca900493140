"""A file backend of mmengine that never leaves a half-written file under its final name.

mmengine's ``save_checkpoint`` writes through the file backend that ``backend_args`` names
(``get_file_backend(filename, backend_args).put(bytes, filename)``), and ``CheckpointHook``
passes its ``backend_args`` on. Its ``LocalBackend`` opens the final name and writes into it:
a run killed while it saves, or a full disk, leaves a truncated ``epoch_N.pth`` that looks like a
checkpoint. ``backend_args=dict(backend=ATOMIC_LOCAL_BACKEND)`` (tools/train.py sets it) writes
to a temporary file next to it instead, renamed into place once whole.

:func:`register_atomic_local_backend` adds it to mmengine's backends; importing mmxformer does
not, so that it adds nothing there for a program that does not use it.
"""
from pathlib import Path
from typing import Union

from mmengine.fileio import LocalBackend, register_backend

from ..utils.fileio import write_bytes_atomically

__all__ = ['ATOMIC_LOCAL_BACKEND', 'AtomicLocalBackend', 'register_atomic_local_backend']

#: The name of :class:`AtomicLocalBackend` among mmengine's file backends.
ATOMIC_LOCAL_BACKEND = 'mmxformer_atomic_local'


class AtomicLocalBackend(LocalBackend):
    """mmengine's ``LocalBackend``, whose ``put`` and ``put_text`` write a temporary file next to
    the target and rename it: the target holds its earlier content, or the new one whole. An
    ``OSError`` (a full or read-only disk) names the target."""

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        write_bytes_atomically(str(filepath), obj)

    def put_text(self, obj: str, filepath: Union[str, Path], encoding: str = 'utf-8') -> None:
        write_bytes_atomically(str(filepath), obj.encode(encoding))


def register_atomic_local_backend() -> str:
    """Add :class:`AtomicLocalBackend` to mmengine's file backends (again: no error).

    Returns:
        str: Its name, :data:`ATOMIC_LOCAL_BACKEND`.
    """
    # force: the name is mmxformer's own, and a second call must not fail
    register_backend(ATOMIC_LOCAL_BACKEND, AtomicLocalBackend, force=True)
    return ATOMIC_LOCAL_BACKEND
