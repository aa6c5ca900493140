"""Files that are never half-written: a temporary file next to the target, renamed into place."""
import contextlib
import hashlib
import os
import os.path as osp
import tempfile

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


def save_atomically(obj, path):
    """``torch.save`` to a temporary file next to ``path``, then rename: never half-written."""
    directory = osp.dirname(osp.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with temporary_path(directory, f'.{osp.basename(path)}.', '.tmp') as tmp:
        torch.save(obj, tmp)
        os.replace(tmp, path)


def write_text_atomically(path, text):
    """Write ``text`` to a temporary file next to ``path``, then rename: never half-written."""
    directory = osp.dirname(osp.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with temporary_path(directory, f'.{osp.basename(path)}.', '.tmp') as tmp:
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write(text)
        os.replace(tmp, path)


def write_bytes_atomically(path, data):
    """Write ``data`` to a temporary file next to ``path``, then rename: never half-written."""
    directory = osp.dirname(osp.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with temporary_path(directory, f'.{osp.basename(path)}.', '.tmp') as tmp:
        with open(tmp, 'wb') as f:
            f.write(data)
        os.replace(tmp, path)
