"""The config of a run and its model, whatever its toolbox (mmpretrain, mmdet or mmseg)."""
import ast
import copy
import difflib
import inspect
import os.path as osp
from importlib import import_module

from mmengine.config import Config
from mmengine.registry import init_default_scope

from ..registry import TOOLBOXES

# Top-level settings that mmengine's runners read from the config, beyond their arguments.
RUNNER_CFG_KEYS = ('runner_type', 'sync_bn', 'compile', 'model_wrapper_cfg', 'strategy',
                   'find_unused_parameters', 'efficient_conv_bn_eval', 'activation_checkpointing')


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
    config's, else ``work_dirs/<config name>``).

    Raises:
        SyntaxError: The config or one of its ``_base_`` files is not valid Python; the message
            names the file and line.
        ValueError: A key of ``cfg_options`` starts with a name that is neither in the config nor
            a setting of mmengine's ``Runner`` (a typo such as ``modle.backbone.arch``).
    """
    path = config_file(path)
    try:
        cfg = Config.fromfile(path)
    except SyntaxError as error:
        raise syntax_error_in(path, error) from None
    if cfg_options:
        check_option_keys(cfg, cfg_options)
        cfg.merge_from_dict(cfg_options)
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('work_dirs', osp.splitext(osp.basename(path))[0])
    toolbox_of(cfg)
    return cfg


def check_option_keys(cfg, cfg_options):
    """Raise if the first part of a ``--cfg-options`` key is neither a top-level key of ``cfg``
    nor a setting that mmengine's ``Runner`` takes (``load_from``, ``randomness``, ``sync_bn``,
    ...): merged, it would be ignored.

    Raises:
        ValueError: Names the unknown keys, each with the closest known names.
    """
    from mmengine.runner import Runner
    known = (
        set(cfg.keys()) | set(RUNNER_CFG_KEYS)
        | set(inspect.signature(Runner.__init__).parameters) - {'self'})
    unknown = sorted({key.split('.')[0] for key in cfg_options} - known)
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, sorted(known), n=3)
            hints.append(f"'{name}'" +
                         (f" (did you mean {' or '.join(map(repr, close))}?)" if close else ''))
        verb = 'is not a key' if len(unknown) == 1 else 'are not keys'
        raise ValueError(f'--cfg-options: {", ".join(hints)} {verb} of {cfg.filename} (nor a '
                         'setting of the runner), so the option would be ignored')


def syntax_error_in(path, error):
    """The syntax error of a config, naming the file it is in: mmengine parses ``_base_`` files
    without their names (``File "<unknown>"``), so the config and its bases are parsed again.

    Args:
        path (str): The config file that failed to load.
        error (SyntaxError): mmengine's error.

    Returns:
        SyntaxError: One whose message names the file and line, or ``error`` if no file of the
        config has a syntax error of its own.
    """
    for file in _config_files(path):
        with open(file, encoding='utf-8') as f:
            source = f.read()
        try:
            ast.parse(source, filename=file)
        except SyntaxError as found:
            return SyntaxError(f'{file}, line {found.lineno}: {found.msg}',
                               (file, found.lineno, found.offset, found.text))
    return error


def _config_files(path, seen=None):
    """``path`` and, recursively, the files its ``_base_`` names (those whose names can be read
    without running the config)."""
    seen = set() if seen is None else seen
    path = osp.abspath(path)
    if path in seen:
        return
    seen.add(path)
    yield path
    with open(path, encoding='utf-8') as f:
        source = f.read()
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(target, ast.Name) and target.id == '_base_' for target in node.targets):
            try:
                bases = ast.literal_eval(node.value)
            except ValueError:
                return
            for base in [bases] if isinstance(bases, str) else list(bases):
                file = base if '::' in base else osp.join(osp.dirname(path), base)
                try:
                    yield from _config_files(config_file(file), seen)
                except FileNotFoundError:
                    continue


def build_model(cfg):
    """The model of an mmpretrain, mmdet or mmseg config, in eval mode, without any dataset."""
    toolbox = toolbox_of(cfg)
    init_default_scope(toolbox)
    registry = import_module(f'{toolbox}.registry').MODELS
    model_cfg = dict(cfg.model)
    model_cfg.pop('pretrained', None)
    return registry.build(model_cfg).eval()


def with_model_preprocessor(cfg):
    """``cfg``, or a copy whose ``model.data_preprocessor`` is the top-level one: mmpretrain's
    configs keep it there and its runner moves it into the model, which :func:`build_model`
    alone would build with default settings."""
    if cfg.model.get('data_preprocessor') or not cfg.get('data_preprocessor'):
        return cfg
    cfg = copy.deepcopy(cfg)
    cfg.model.data_preprocessor = cfg.data_preprocessor
    return cfg


def preprocessing_of(cfg):
    """The data preprocessor settings of a config (the model's, else the top-level one)."""
    return dict(cfg.model.get('data_preprocessor') or cfg.get('data_preprocessor') or {})


def check_shape(cfg, shape):
    """Raise if ``shape`` (H, W) is not an input the config's model is fed: positive, and a
    multiple of the data preprocessor's ``pad_size_divisor`` where it pads.

    Raises:
        ValueError: Says which sizes the model takes.
    """
    if len(shape) != 2 or min(shape) <= 0:
        raise ValueError(f'The input shape must be two positive integers H W, got {shape}')
    divisor = preprocessing_of(cfg).get('pad_size_divisor', 1)
    if any(size % divisor for size in shape):
        raise ValueError(f'This model is fed images padded to multiples of {divisor} '
                         f'(pad_size_divisor of its data preprocessor); got the input shape '
                         f'{tuple(shape)}. Use sizes that are multiples of {divisor}.')
