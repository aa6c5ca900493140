"""The config of a run and its model, whatever its toolbox (mmpretrain, mmdet or mmseg)."""
import os.path as osp
from importlib import import_module

from mmengine.config import Config
from mmengine.registry import init_default_scope

from .setup_env import TOOLBOXES


def toolbox_of(cfg):
    """The toolbox a config belongs to, from its ``default_scope``."""
    scope = cfg.get('default_scope')
    if scope not in TOOLBOXES:
        raise ValueError(f"Config {cfg.filename} has default_scope={scope!r}; tools/train.py and "
                         f"tools/test.py run configs whose default_scope is one of {TOOLBOXES}")
    return scope


def config_file(path):
    """The file of a config given as a path or, as in ``_base_``, as ``package::name`` for a
    config shipped with an installed toolbox (``mmdet::yolo/yolov3_d53_8xb8-320-273e_coco.py``)."""
    if '::' not in path:
        if not osp.isfile(path):
            raise FileNotFoundError(f'Config file {path} does not exist')
        return path
    package, name = path.split('::', 1)
    from mmengine.utils import get_installed_path, is_installed
    if not is_installed(package):
        raise FileNotFoundError(f'Config {path}: package {package!r} is not installed')
    file = osp.join(get_installed_path(package), '.mim', 'configs', name)
    if not osp.isfile(file):
        raise FileNotFoundError(f'Config {path}: {package} ships no {name} (looked for {file})')
    return file


def load_config(path, cfg_options=None, work_dir=None, launcher='none'):
    """Load a config (a path, or ``package::name``: see :func:`config_file`), merge
    ``--cfg-options``, and set ``launcher`` and ``work_dir`` (the command line's, else the
    config's, else ``work_dirs/<config name>``)."""
    path = config_file(path)
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('work_dirs', osp.splitext(osp.basename(path))[0])
    toolbox_of(cfg)
    return cfg


def build_model(cfg):
    """The model of an mmpretrain, mmdet or mmseg config, in eval mode, without any dataset."""
    toolbox = toolbox_of(cfg)
    init_default_scope(toolbox)
    registry = import_module(f'{toolbox}.registry').MODELS
    model_cfg = dict(cfg.model)
    model_cfg.pop('pretrained', None)
    return registry.build(model_cfg).eval()
