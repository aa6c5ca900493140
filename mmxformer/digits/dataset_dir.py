"""Write a generated dataset directory atomically, once.

The set is written into a temporary directory next to the target and renamed into place, so a
reader never sees half a set. A manifest records the generator's arguments: running again with
the same arguments finds the complete set and does nothing.
"""
import json
import os
import shutil
import uuid
from pathlib import Path

from mmengine.logging import print_log

MANIFEST = 'digits_manifest.json'
FORMAT_VERSION = 1


def read_manifest(out_dir):
    """The manifest of a complete set in ``out_dir``, or None."""
    try:
        with open(Path(out_dir) / MANIFEST) as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get('complete') else None


def _same_set(manifest, kind, args):
    return manifest is not None and manifest.get('kind') == kind and manifest.get(
        'format_version') == FORMAT_VERSION and manifest.get('args') == args


def build_once(out_dir, kind, args, write, force=False):
    """Make the set ``kind`` with ``args`` in ``out_dir`` unless it is already there.

    Args:
        out_dir (str | Path): The set's directory.
        kind (str): Name of the generator, recorded in the manifest.
        args (dict): The generator's arguments (JSON-serialisable), recorded in the manifest.
        write (Callable[[Path], dict]): Writes the set into the directory it is given and returns
            counts to record.
        force (bool): Replace an existing directory that holds another set. Defaults to False.

    Returns:
        Path: ``out_dir``.
    """
    out_dir = Path(out_dir)
    args = json.loads(json.dumps(args))  # tuples become lists, as they will be read back
    if _same_set(read_manifest(out_dir), kind, args):
        print_log(f'{out_dir} already holds this {kind} set; nothing to do', logger='current')
        return out_dir
    if out_dir.exists() and not force:
        raise FileExistsError(
            f'{out_dir} exists but does not hold a complete {kind} set made with these arguments '
            f'({MANIFEST} differs or is missing); remove it, choose another output directory or '
            'pass force=True (--force) to replace it')
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = out_dir.with_name(f'.{out_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}')
    tmp_dir.mkdir()
    try:
        counts = write(tmp_dir)
        manifest = dict(kind=kind, format_version=FORMAT_VERSION, args=args, counts=counts,
                        complete=True)
        with open(tmp_dir / MANIFEST, 'w') as f:
            json.dump(manifest, f, indent=2, sort_keys=True)
            f.write('\n')
        _move_into_place(tmp_dir, out_dir, kind, args)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    print_log(f'wrote the {kind} set to {out_dir}', logger='current')
    return out_dir


def _move_into_place(tmp_dir, out_dir, kind, args):
    """Rename ``tmp_dir`` to ``out_dir``, moving a previous ``out_dir`` out of the way first."""
    old_dir = None
    if out_dir.exists():
        old_dir = out_dir.with_name(f'.{out_dir.name}.old-{os.getpid()}')
        out_dir.rename(old_dir)
    try:
        tmp_dir.rename(out_dir)
    except OSError:
        # Another process has just put a set there: keep it if it is the same one.
        if not _same_set(read_manifest(out_dir), kind, args):
            if old_dir is not None and not out_dir.exists():
                old_dir.rename(out_dir)
            raise
    if old_dir is not None:
        shutil.rmtree(old_dir)
