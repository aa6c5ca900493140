"""Write a generated dataset directory atomically, once.

The set is written into a temporary directory next to the target and renamed into place, so a
reader never sees half a set. A manifest records the generator's arguments and the files it
wrote: running again with the same arguments finds the complete set and does nothing. Only a
directory that holds a set made here (its manifest), and nothing else, is ever replaced; what a
killed run left next to the target (its temporary directory, or the previous set it had moved
aside) is cleaned up by the next run. One run at a time works on a target (a lock next to it):
another one waits, then finds what the first one made.
"""
import json
import os
import re
import shutil
import uuid
from pathlib import Path

from mmengine.logging import print_log

from ...utils.fileio import exclusive_lock, process_is_running

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
        FileExistsError: ``out_dir`` holds something else than this set, and may not be replaced:
            not a set made here, or not ``force``, or files that the set's manifest does not
            list (added by a user, and kept).
    """
    out_dir = Path(out_dir)
    args = json.loads(json.dumps(args))  # tuples become lists, as they will be read back
    if _same_set(read_manifest(out_dir), kind, args):  # without the lock: on a read-only disk too
        remove_leftovers(out_dir)
        print_log(f'{out_dir} already holds this {kind} set; nothing to do', logger='current')
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)

    def waiting(holder):
        print_log(f'{out_dir}: waiting for {holder}, which is writing it', logger='current')

    with exclusive_lock(str(out_dir.with_name(f'.{out_dir.name}.lock')), True, waiting):
        remove_leftovers(out_dir)
        manifest = read_manifest(out_dir)
        if _same_set(manifest, kind, args):  # the run that held the lock made it
            print_log(f'{out_dir} already holds this {kind} set; nothing to do', logger='current')
            return out_dir
        if out_dir.exists():  # refused now rather than after writing the set
            _check_replaceable(out_dir, kind, force)
        tmp_dir = out_dir.with_name(f'.{out_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}')
        tmp_dir.mkdir()
        try:
            counts = write(tmp_dir)
            manifest = dict(
                kind=kind,
                format_version=FORMAT_VERSION,
                args=args,
                counts=counts,
                files=sorted(_files(tmp_dir)),
                complete=True)
            with open(tmp_dir / MANIFEST, 'w') as f:
                json.dump(manifest, f, indent=2, sort_keys=True)
                f.write('\n')
            _move_into_place(tmp_dir, out_dir, kind, args, force)
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
    print_log(f'wrote the {kind} set to {out_dir}', logger='current')
    return out_dir


def _files(root):
    """The paths under ``root``, relative and with '/', of everything but its directories (a link
    to a directory counts as a file: it is not followed)."""
    found = set()
    for directory, dirs, files in os.walk(root):
        links = [name for name in dirs if os.path.islink(os.path.join(directory, name))]
        for name in files + links:
            found.add(Path(directory, name).relative_to(root).as_posix())
    return found


def _check_replaceable(out_dir, kind, force):
    """Raise ``FileExistsError`` unless ``out_dir`` may be replaced by a new set: it holds a set
    made here, ``force`` says to replace it, and it holds nothing that the set's manifest does
    not list (a set made before manifests listed their files may hold anything)."""
    manifest = read_manifest(out_dir)
    if manifest is None or not force:
        raise FileExistsError(_refusal(out_dir, kind, manifest))
    if 'files' not in manifest:
        raise FileExistsError(f'{out_dir} holds a {manifest.get("kind")} set made by an earlier '
                              f'version of this tool, whose {MANIFEST} does not list its files: '
                              'it may hold files of yours, so it is not replaced. Remove it '
                              'yourself, or choose another output directory')
    added = sorted(_files(out_dir) - set(manifest['files']) - {MANIFEST})
    if added:
        few = ', '.join(added[:3]) + (f' and {len(added) - 3} more' if len(added) > 3 else '')
        raise FileExistsError(f'{out_dir} holds {len(added)} files that this tool did not write '
                              f'({few}), so even force=True (--force) does not replace it: move '
                              'them out, or choose another output directory')


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
        if not match or not path.is_dir() or process_is_running(int(match[2])):
            continue
        if match[1] == 'old' and not out_dir.exists():
            path.rename(out_dir)
            print_log(
                f'put back {out_dir}, which a killed run had moved to {path}', logger='current')
        elif match[1] == 'tmp' or read_manifest(path) is not None:
            shutil.rmtree(path)
            print_log(f'removed {path}, left by a killed run', logger='current')


def _move_into_place(tmp_dir, out_dir, kind, args, force):
    """Rename ``tmp_dir`` to ``out_dir``, moving a previous ``out_dir`` out of the way first (once
    checked again: files may have been added while the set was written)."""
    old_dir = None
    if out_dir.exists():
        _check_replaceable(out_dir, kind, force)
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
