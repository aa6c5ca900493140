"""mmxformer's classifiers by name in mmpretrain's model API.

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
import os.path as osp
import warnings

import yaml

METAFILE = osp.join('configs', 'metafile_cls.yml')


def find_cls_metafile():
    """Where the classification metafile is, and the directory its config paths are relative to.

    An installed package has it in ``mmxformer/.mim/configs/``, a checkout (or an editable
    install) in ``configs/`` at the repository root.

    Returns:
        tuple[str, str] | None: ``(metafile, config_root)``, or None if neither exists.
    """
    package = osp.dirname(osp.abspath(__file__))
    for root in (osp.join(package, '.mim'), osp.dirname(package)):
        path = osp.join(root, METAFILE)
        if osp.isfile(path):
            return path, root
    return None


def register_mmpretrain_models(metafile=None, config_root=None):
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
    try:
        from mmpretrain.apis import ModelHub
    except ModuleNotFoundError as error:
        if error.name not in ('mmpretrain', 'mmpretrain.apis'):
            raise  # installed but broken: say so rather than skip it
        return []
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
