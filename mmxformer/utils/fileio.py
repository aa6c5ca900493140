"""Files that are never half-written (a temporary file next to the target, renamed into place),
and locks that one process at a time holds."""
import contextlib
import fcntl
import hashlib
import os
import os.path as osp
import socket
import tempfile
from typing import Callable, Iterator, Optional

import torch

CHUNK_SIZE = 1 << 20


def file_sha256(path):
    """The SHA-256 of a file, as hex."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(CHUNK_SIZE), b''):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def temporary_path(directory, prefix, suffix):
    """The path of a new empty file in ``directory``, removed on exit unless renamed away.

    Made readable by all (0644), as a file created normally would be, so that renaming it into
    place publishes it.
    """
    fd, path = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=suffix)
    os.close(fd)
    os.chmod(path, 0o644)
    try:
        yield path
    finally:
        if osp.exists(path):
            os.remove(path)


@contextlib.contextmanager
def naming_output(path: str) -> Iterator[None]:
    """An ``OSError`` of the block (a disk that filled up while a temporary file was written)
    names ``path``, the file that was not written, instead of the temporary file."""
    try:
        yield
    except OSError as error:
        if error.errno is None:
            raise
        raise OSError(error.errno, error.strerror, path) from error


def save_atomically(obj, path):
    """``torch.save`` to a temporary file next to ``path``, then rename: never half-written."""
    directory = osp.dirname(osp.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with naming_output(path), temporary_path(directory, f'.{osp.basename(path)}.', '.tmp') as tmp:
        torch.save(obj, tmp)
        os.replace(tmp, path)


def write_text_atomically(path, text):
    """Write ``text`` to a temporary file next to ``path``, then rename: never half-written."""
    directory = osp.dirname(osp.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with naming_output(path), temporary_path(directory, f'.{osp.basename(path)}.', '.tmp') as tmp:
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write(text)
        os.replace(tmp, path)


def write_bytes_atomically(path, data):
    """Write ``data`` to a temporary file next to ``path``, then rename: never half-written."""
    directory = osp.dirname(osp.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with naming_output(path), temporary_path(directory, f'.{osp.basename(path)}.', '.tmp') as tmp:
        with open(tmp, 'wb') as f:
            f.write(data)
        os.replace(tmp, path)


class LockedError(RuntimeError):
    """Another process holds a lock of :func:`exclusive_lock`.

    Attributes:
        path (str): The lock file.
        holder (str): Who holds it, as the lock file says (``'pid 1234 on host'``).
    """

    def __init__(self, path: str, holder: str):
        super().__init__(f'{path} is held by {holder}')
        self.path = path
        self.holder = holder


@contextlib.contextmanager
def exclusive_lock(path: str,
                   wait: bool = False,
                   on_wait: Optional[Callable[[str], None]] = None) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` while the block runs.

    The lock is ``fcntl.flock``'s: the kernel releases it when its holder ends, however it ends
    (a killed process leaves no lock behind, only perhaps the file, which the next holder takes
    over). The file says who holds it (pid and host), for the message of a process that finds it
    held; it is removed on release.

    Args:
        path (str): The lock file; made if missing (its directory must exist).
        wait (bool): Wait until the holder releases it, instead of raising. Defaults to False.
        on_wait (Callable[[str], None], optional): Called with the holder (``'pid N on host'``)
            before waiting. Defaults to None.

    Raises:
        LockedError: Another process holds the lock, and ``wait`` is False.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _lock_holder(fd)
                if not wait:
                    raise LockedError(path, holder) from None
                if on_wait is not None:
                    on_wait(holder)
                fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        # The holder before removed the file as it released the lock: this lock is on a file
        # that no longer has the name, and another process may hold the one that has it now.
        if _is_named(fd, path):
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f'pid {os.getpid()} on {socket.gethostname()}\n'.encode())
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
        os.close(fd)


def _lock_holder(fd):
    holder = os.pread(fd, 256, 0).decode(errors='replace').strip()
    return holder or 'another process'


def _is_named(fd, path):
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def process_is_running(pid: int) -> bool:
    """Whether process ``pid`` of this machine is running (what a temporary file whose name holds
    a pid was left by: a killed process's may be removed)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
