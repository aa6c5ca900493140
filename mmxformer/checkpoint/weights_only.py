"""``torch.load`` restricted to the weights-only allow-list, on every torch mmxformer supports.

torch >= 2.4 restricts ``torch.load(weights_only=True)`` to an allow-list that
:func:`~mmxformer.checkpoint.safe_globals.install_safe_globals` extends. torch 2.1-2.3 have a
weights-only unpickler too, but its list cannot be extended: it refuses every checkpoint that
mmengine writes during training (the message hub's ``HistoryBuffer``), so a resume, or a test of
what ``tools/train.py`` wrote, would fail. There this module is ``torch.load``'s
``pickle_module`` (it has the ``Unpickler`` and ``load`` that torch calls): Python's unpickler
with ``find_class`` answering only torch's own list and :data:`SAFE_GLOBALS`, and BUILD (which
sets an object's state) only on instances of allowed classes, as torch's own unpickler does.
"""
import _compat_pickle
import collections
import functools
import pickle
import sys

import torch

from .safe_globals import SAFE_GLOBALS, install_safe_globals, pickled_name


def _latin1_bytes(text, encoding):
    """``_codecs.encode`` as protocol 2 uses it for ``bytes`` (numpy's buffers): latin-1 only,
    so that a pickle cannot import a codec by name."""
    if encoding not in ('latin1', 'latin-1') or not isinstance(text, str):
        raise pickle.UnpicklingError(
            f'_codecs.encode({type(text).__name__}, {encoding!r}) is refused: a checkpoint '
            "stores bytes as _codecs.encode(str, 'latin1')")
    return text.encode('latin-1')


@functools.lru_cache(maxsize=1)
def _allowed_globals():
    """torch's own weights-only globals (of this version) and what torch >= 2.4 adds by default
    and mmengine's checkpoints use, with :data:`SAFE_GLOBALS`, by pickled name."""
    allowed = dict(torch._weights_only_unpickler._get_allowed_globals())
    for value in vars(torch).values():
        if isinstance(value, torch.dtype):
            allowed[str(value)] = value
    allowed.update({
        '_codecs.encode': _latin1_bytes,
        'builtins.set': set,
        'builtins.bytearray': bytearray,
        'builtins.complex': complex,
        'collections.Counter': collections.Counter,
        'torch.device': torch.device,
    })
    allowed.update((pickled_name(entry), entry[0] if isinstance(entry, tuple) else entry)
                   for entry in SAFE_GLOBALS)
    return allowed


@functools.lru_cache(maxsize=1)
def _allowed_classes():
    return frozenset(value for value in _allowed_globals().values() if isinstance(value, type))


class Unpickler(pickle._Unpickler):
    """Python's unpickler (the pure-Python one, whose opcodes can be overridden) restricted to
    the allow-list. ``torch.load`` subclasses it and calls :meth:`find_class` through ``super``
    for everything but its storage types."""

    def find_class(self, module, name):
        if self.proto < 3 and self.fix_imports:  # protocol 2, torch.save's: Python 2's names
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        try:
            return _allowed_globals()[f'{module}.{name}']
        except KeyError:  # the same words as torch's own refusal
            raise pickle.UnpicklingError(f'Unsupported global: GLOBAL {module}.{name} was not '
                                         'an allowed global by default.') from None

    def load_build(self):
        # BUILD sets the state of the object below it: on a class or a function it would
        # rewrite the host's code, so only instances of allowed classes are built.
        target = type(self.stack[-2])
        if target not in _allowed_classes():
            raise pickle.UnpicklingError(f'Can only build instances of allowed classes, but got '
                                         f'{target.__module__}.{target.__qualname__}')
        super().load_build()

    dispatch = {**pickle._Unpickler.dispatch, pickle.BUILD[0]: load_build}


def load(file, **kwargs):
    """``pickle.load`` with :class:`Unpickler` (torch.load reads a legacy file's header so)."""
    return Unpickler(file, **kwargs).load()


def load_weights_only(file, map_location='cpu'):
    """``torch.load`` of ``file`` allowing only tensors, containers and :data:`SAFE_GLOBALS`:
    ``weights_only=True`` with the allow-list extended (torch >= 2.4), this module's unpickler
    before.

    Raises:
        pickle.UnpicklingError: The file needs a global outside the list; nothing of it ran.
    """
    if install_safe_globals():
        return torch.load(file, map_location=map_location, weights_only=True)
    return torch.load(
        file, map_location=map_location, weights_only=False, pickle_module=sys.modules[__name__])
