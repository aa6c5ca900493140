"""The model index (``model-index.yml`` and its metafiles), and mmxformer's classifiers by name
in mmpretrain's model API.

mmpretrain knows models by name through ``mmpretrain.apis.ModelHub``, which takes other packages'
metafiles with ``ModelHub.register_model_index``. Registering ``configs/metafile_cls.yml`` there
makes ``get_model``, ``inference_model``, ``list_models`` and ``ImageClassificationInferencer``
work with mmxformer's names::

    >>> import mmxformer  # registers the names when mmpretrain is installed
    >>> from mmpretrain import get_model, inference_model
    >>> model = get_model('xformer-xxs_digits', pretrained='work_dirs/digits/epoch_12.pth')
    >>> inference_model(model, 'digit.png')['pred_class']
    '7'
"""
import difflib
import os.path as osp
import warnings
from typing import Dict, List, Optional, Tuple
from urllib.parse import urlparse

import yaml

from ..utils.imports import import_if_installed

METAFILE = osp.join('configs', 'metafile_cls.yml')
# mmxformer/: an installed package keeps the index in .mim/, a checkout one level up.
PACKAGE_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))


def find_model_index():
    """The package's ``model-index.yml``: in ``.mim/`` once installed, at the repository root in
    a checkout; None if there is none."""
    for path in (osp.join(PACKAGE_DIR, '.mim',
                          'model-index.yml'), osp.join(osp.dirname(PACKAGE_DIR),
                                                       'model-index.yml')):
        if osp.isfile(path):
            return path
    return None


def load_model_index(path: Optional[str] = None) -> Dict[str, dict]:
    """The models of an OpenMMLab model index, following its ``Import`` list of metafiles.

    Args:
        path (str, optional): A ``model-index.yml`` or a metafile. Defaults to
            :func:`find_model_index` (no index: no models).

    Returns:
        dict[str, dict]: Each model's entry (``Name``, ``Config``, ``Weights``, ...) by name.
    """
    path = path or find_model_index()
    models = {}
    if path is not None:
        _read_index(path, models, set())
    return models


def _read_index(path, models, seen):
    path = osp.abspath(path)
    if path in seen:
        return
    seen.add(path)
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f'{path}: a model index is a mapping with Import, Collections or Models '
                         f'keys, got a {type(data).__name__}')
    for metafile in data.get('Import') or []:
        _read_index(osp.join(osp.dirname(path), metafile), models, seen)
    for entry in data.get('Models') or []:
        name = entry.get('Name') if isinstance(entry, dict) else None
        if not name:
            raise ValueError(f'{path}: every entry of Models needs a Name, got {entry!r}')
        if name in models:
            raise ValueError(f'{path}: model {name!r} is listed twice in the model index')
        models[name] = entry


def resolve_model(name: str, index: Optional[str] = None) -> Tuple[str, Optional[str]]:
    """The weights URL and expected SHA-256 of a model of the index.

    The hash is the entry's optional ``SHA256`` (a full hash or a prefix of at least 8 hex); the
    8-hex suffix of the file name is checked as well by :func:`download_checkpoint`.

    Returns:
        tuple[str, str | None]: The URL and the hash from the entry.
    """
    models = load_model_index(index)
    if name not in models:
        close = difflib.get_close_matches(name, models, n=3)
        hint = f'did you mean {", ".join(close)}? ' if close else ''
        where = index or find_model_index() or 'no model-index.yml found'
        raise ValueError(f'Unknown model {name!r} ({where}): {hint}'
                         f'{len(models)} models are listed; pass a URL to download any file')
    url = models[name].get('Weights')
    if not url:
        raise ValueError(f'Model {name!r} has no published checkpoint (no Weights in the index)')
    if urlparse(url).scheme not in ('http', 'https'):
        raise ValueError(f'The Weights of model {name!r} is not an http(s) URL: {url!r}')
    return url, models[name].get('SHA256')


def find_cls_metafile():
    """Where the classification metafile is, and the directory its config paths are relative to.

    An installed package has it in ``mmxformer/.mim/configs/``, a checkout (or an editable
    install) in ``configs/`` at the repository root.

    Returns:
        tuple[str, str] | None: ``(metafile, config_root)``, or None if neither exists.
    """
    for root in (osp.join(PACKAGE_DIR, '.mim'), osp.dirname(PACKAGE_DIR)):
        path = osp.join(root, METAFILE)
        if osp.isfile(path):
            return path, root
    return None


def register_mmpretrain_models(metafile: Optional[str] = None,
                               config_root: Optional[str] = None) -> List[str]:
    """Register the models of a metafile into mmpretrain's model index.

    Idempotent: the models of a metafile already registered are left as they are.

    Args:
        metafile (str, optional): An OpenMMLab metafile. Defaults to :func:`find_cls_metafile`.
        config_root (str, optional): The directory its ``Config`` paths are relative to.
            Defaults to the one :func:`find_cls_metafile` gives, else the metafile's parent's
            parent (the metafile sits in ``configs/``).

    Returns:
        list[str]: The registered model names; empty when mmpretrain is not installed or no
        metafile is found (a warning then says why the names are missing).

    Raises:
        ValueError: A name of the metafile is already registered from another file.
    """
    apis = import_if_installed('mmpretrain.apis')
    if apis is None:
        return []
    ModelHub = apis.ModelHub
    if metafile is None:
        found = find_cls_metafile()
        if found is None:
            warnings.warn(f'mmxformer found no {METAFILE} (neither in mmxformer/.mim nor in a '
                          'checkout), so mmpretrain.get_model does not know the XFormer names; '
                          'install mmxformer with its configs (pip install -e . from the '
                          'repository) or pass config files instead of names')
            return []
        metafile, default_root = found
    else:
        default_root = osp.dirname(osp.dirname(osp.abspath(metafile)))
    metafile = osp.abspath(metafile)
    names = model_names(metafile)
    registered = [name for name in names if ModelHub.has(name)]
    for name in registered:
        # ModelHub has no public accessor that does not load the config.
        other = osp.abspath(ModelHub._models_dict[name].filepath)
        if other != metafile:
            raise ValueError(f'Model name {name!r} of {metafile} is already registered in '
                             f"mmpretrain's model index by {other}; rename one of them")
    if len(registered) < len(names):
        ModelHub.register_model_index(metafile, config_prefix=config_root or default_root)
    return names


def model_names(metafile):
    """The model names of a metafile, lower-case as mmpretrain keys them."""
    with open(metafile) as f:
        data = yaml.safe_load(f) or {}
    models = data.get('Models') if isinstance(data, dict) else None
    if not models:
        raise ValueError(f'{metafile} lists no Models; an OpenMMLab metafile has a Models list '
                         'of entries with Name and Config')
    return [entry['Name'].lower() for entry in models]
