"""Write a generated dataset directory atomically, once.

The set is written into a temporary directory next to the target and renamed into place, so a
reader never sees half a set. A manifest records the generator's arguments: running again with
the same arguments finds the complete set and does nothing. Only a directory that holds a set
made here (its manifest) is ever replaced; what a killed run left next to the target (its
temporary directory, or the previous set it had moved aside) is cleaned up by the next run.
"""
import json
import os
import re
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
        force (bool): Replace an existing directory that holds another set made here (one with a
            complete manifest). A directory without one is never replaced. Defaults to False.

    Returns:
        Path: ``out_dir``.

    Raises:
        FileExistsError: ``out_dir`` holds something else than this set, and may not be replaced.
    """
    out_dir = Path(out_dir)
    args = json.loads(json.dumps(args))  # tuples become lists, as they will be read back
    remove_leftovers(out_dir)
    manifest = read_manifest(out_dir)
    if _same_set(manifest, kind, args):
        print_log(f'{out_dir} already holds this {kind} set; nothing to do', logger='current')
        return out_dir
    if out_dir.exists() and (manifest is None or not force):
        raise FileExistsError(_refusal(out_dir, kind, manifest))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = out_dir.with_name(f'.{out_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}')
    tmp_dir.mkdir()
    try:
        counts = write(tmp_dir)
        manifest = dict(
            kind=kind, format_version=FORMAT_VERSION, args=args, counts=counts, complete=True)
        with open(tmp_dir / MANIFEST, 'w') as f:
            json.dump(manifest, f, indent=2, sort_keys=True)
            f.write('\n')
        _move_into_place(tmp_dir, out_dir, kind, args)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    print_log(f'wrote the {kind} set to {out_dir}', logger='current')
    return out_dir


def _refusal(out_dir, kind, manifest):
    if not out_dir.is_dir():
        return f'{out_dir} exists and is not a directory; choose another output directory'
    if manifest is None:
        return (f'{out_dir} exists and holds no set made by this tool (no complete {MANIFEST}), '
                'so it is never replaced: remove it yourself or choose another output directory')
    return (f'{out_dir} holds a {manifest.get("kind")} set made with other arguments '
            f'({MANIFEST}: {manifest.get("args")}); pass force=True (--force) to replace it '
            f'with this {kind} set, or choose another output directory')


def remove_leftovers(out_dir):
    """Clean up what runs that were killed left next to ``out_dir``: their temporary
    directories (``.NAME.tmp-PID-...``) are removed; the previous set one had moved aside
    (``.NAME.old-PID``) is put back if ``out_dir`` is missing, else removed if it holds a set
    (its manifest). Those of processes that still run are left alone."""
    out_dir = Path(out_dir)
    if not out_dir.parent.is_dir():
        return
    pattern = re.compile(rf'\.{re.escape(out_dir.name)}\.(tmp|old)-(\d+)(-[0-9a-f]+)?')
    for path in sorted(out_dir.parent.iterdir()):
        match = pattern.fullmatch(path.name)
        if not match or not path.is_dir() or _running(int(match[2])):
            continue
        if match[1] == 'old' and not out_dir.exists():
            path.rename(out_dir)
            print_log(
                f'put back {out_dir}, which a killed run had moved to {path}', logger='current')
        elif match[1] == 'tmp' or read_manifest(path) is not None:
            shutil.rmtree(path)
            print_log(f'removed {path}, left by a killed run', logger='current')


def _running(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


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
