"""Reading a data set's files without running code from them.

The toolboxes read some annotation files with loaders that can run code: mmengine's ``load``
unpickles ``.pkl`` / ``.pickle`` files with :mod:`pickle` and reads ``.yaml`` / ``.yml`` files
with PyYAML's full ``Loader`` (which builds any Python object a ``!!python/...`` tag names), some
datasets load a pickle whatever its name (``file_format='pkl'``: mmdet's OpenImages ``meta_file``,
RefCOCO's ``split_file``), and mmdet's OpenImages challenge set reads its ``hierarchy_file`` with
``np.load(allow_pickle=True)``. Annotation pickles hold Python's containers and scalars and numpy
arrays, so :func:`check_data_file` unpickles them with an allow-list of exactly those, and reads
YAML with PyYAML's safe loader, before a toolbox reads the file: what else a file needs is refused
without being built.
"""
import _codecs
import builtins
import collections
import os.path as osp
import pickle
from typing import IO, Any, Optional, Union

import numpy as np
import yaml

try:  # numpy >= 2
    from numpy._core import multiarray, numeric
except ImportError:  # numpy 1.x
    from numpy.core import multiarray, numeric

PICKLE_SUFFIXES = ('.pkl', '.pickle', '.p')
YAML_SUFFIXES = ('.yaml', '.yml')
NPY_MAGIC = b'\x93NUMPY'
# How pickles of protocol 2 and later begin (PROTO and its number); mmengine writes protocol 2.
PICKLE_HEADS = tuple(bytes([0x80, protocol]) for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1))
HOW_TO_CONVERT = ('re-save it as JSON (mmengine.dump(data, "ann.json")), or as a pickle of only '
                  'dicts, lists, tuples, strings, numbers and numpy arrays')


def _latin1_encode(text, encoding='latin1'):
    """``_codecs.encode`` as pickles of protocol 2 use it (bytes and array data are pickled as
    ``encode(str, 'latin1')``); any other codec is refused, so that no codec module is imported."""
    if encoding != 'latin1':
        raise UnsafeDataFileError(f'_codecs.encode with the codec {encoding!r}')
    return _codecs.encode(text, encoding)


def _allowed_globals():
    """``{(module, name): object}``: what an annotation pickle may name, under every module name
    that Python (2 or 3) and numpy (1 or 2) write it with."""
    allowed = {
        (module, name): getattr(builtins, name)
        for name in ('set', 'frozenset', 'complex', 'bytearray')
        for module in ('builtins', '__builtin__')
    }
    allowed['collections', 'OrderedDict'] = collections.OrderedDict
    allowed['_codecs', 'encode'] = _latin1_encode
    allowed['numpy', 'ndarray'] = np.ndarray
    allowed['numpy', 'dtype'] = np.dtype
    functions = dict(
        multiarray=(multiarray._reconstruct, multiarray.scalar), numeric=(numeric._frombuffer, ))
    for package in ('numpy._core', 'numpy.core'):
        for module, objs in functions.items():
            allowed.update({(f'{package}.{module}', obj.__name__): obj for obj in objs})
    return allowed


ALLOWED_GLOBALS = _allowed_globals()


class UnsafeDataFileError(ValueError):
    """A data set's file needs something that could run code to be read; nothing of it ran."""


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS`; ``persistent_load`` is refused
    by :class:`pickle.Unpickler` itself."""

    def find_class(self, module, name):
        try:
            return ALLOWED_GLOBALS[module, name]
        except KeyError:
            raise UnsafeDataFileError(f'{module}.{name}') from None


def load_pickle_safely(file: Union[str, IO[bytes]], source: Optional[str] = None) -> Any:
    """Unpickle ``file`` allowing only Python's containers and scalars and numpy arrays, dtypes
    and scalars (:data:`ALLOWED_GLOBALS`).

    Args:
        file (str | file-like): A path, or a binary file object positioned at the pickle.
        source (str, optional): What messages call the file. Defaults to the path.

    Returns:
        The unpickled object.

    Raises:
        UnsafeDataFileError: the pickle names a global outside the allow-list (it may run code);
            nothing was called.
        ValueError: the file is no readable pickle (empty, truncated, damaged).
    """
    source = source or file
    if isinstance(file, str):
        with open(file, 'rb') as f:
            return load_pickle_safely(f, source)
    try:
        # latin1 decodes every string of a Python 2 pickle, so every global is reached and
        # checked whatever the encoding the toolbox's own load uses.
        return _RestrictedUnpickler(file, encoding='latin1').load()
    except UnsafeDataFileError as error:
        raise UnsafeDataFileError(
            f'{source} needs {error} to be unpickled, which could run code: mmxformer unpickles '
            f'data set files with only builtins and numpy allowed; {HOW_TO_CONVERT}') from None
    except Exception as error:  # the unpickler raises many kinds for a damaged stream
        raise ValueError(f'{source} is not a readable pickle ({type(error).__name__}: {error}); '
                         're-create it, or point the config at the right file') from None


def check_data_file(path: str) -> None:
    """Read ``path`` as a toolbox would and refuse it if that could run code: a pickle (by its
    name, ``.pkl``, ``.pickle``, ``.p``, or by its first bytes) with :func:`load_pickle_safely`,
    a YAML file with PyYAML's safe loader, a ``.npy`` file of objects (a pickle after its header)
    with :func:`load_pickle_safely`. Other files (JSON, text, CSV) are not read.

    Raises:
        UnsafeDataFileError: the file needs more than plain data to be read.
        ValueError: a pickle, YAML or ``.npy`` file that cannot be read.
    """
    suffix = osp.splitext(path)[1].lower()
    with open(path, 'rb') as f:
        head = f.read(len(NPY_MAGIC))
        f.seek(0)
        if suffix in PICKLE_SUFFIXES or head.startswith(PICKLE_HEADS):
            load_pickle_safely(f, path)
        elif suffix in YAML_SUFFIXES:
            _check_yaml(f, path)
        elif head == NPY_MAGIC:
            _check_npy(f, path)


def _check_yaml(file, path):
    try:
        yaml.load(file, Loader=getattr(yaml, 'CSafeLoader', yaml.SafeLoader))
    except yaml.constructor.ConstructorError as error:
        line = f', line {error.problem_mark.line + 1}' if error.problem_mark else ''
        raise UnsafeDataFileError(
            f'{path}{line}: a YAML tag that builds a Python object ({error.problem}), which '
            "mmengine's YAML loader would run; keep only plain YAML (mappings, lists, strings, "
            'numbers) or convert the file to JSON') from None
    except yaml.YAMLError as error:
        raise ValueError(f'{path} is not valid YAML: {error}') from None


def _check_npy(file, path):
    try:
        version = np.lib.format.read_magic(file)
        # versions 2 and 3 differ in the header's text encoding only, not in its layout
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0) else np.lib.format.read_array_header_2_0)
        dtype = read_header(file)[2]
    except ValueError as error:
        raise ValueError(f'{path} is not a readable .npy file: {error}') from None
    if dtype.hasobject:  # numpy pickles an array of objects after the header
        load_pickle_safely(file, path)
