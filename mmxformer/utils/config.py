"""The config of a run and its model, whatever its toolbox (mmpretrain, mmdet or mmseg)."""
import ast
import copy
import difflib
import inspect
import os.path as osp
from importlib import import_module

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from ..registry import TOOLBOXES

# Top-level settings that mmengine's runners read from the config, beyond their arguments.
RUNNER_CFG_KEYS = ('runner_type', 'sync_bn', 'compile', 'model_wrapper_cfg', 'strategy',
                   'find_unused_parameters', 'efficient_conv_bn_eval', 'activation_checkpointing')
# How close a key must be to one of a dict without a type to count as its misspelling: the keys
# a dict may gain are not known there, only a near miss of one it has is refused.
NEAR_MISS = 0.85


class ConfigError(ValueError):
    """A config that the tools cannot run as it is: of an unknown ``default_scope``, or
    ``--cfg-options`` that it does not have."""


def toolbox_of(cfg):
    """The toolbox a config belongs to, from its ``default_scope``."""
    scope = cfg.get('default_scope')
    if scope not in TOOLBOXES:
        raise ConfigError(f"Config {cfg.filename} has default_scope={scope!r}; tools/train.py and "
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


def load_config(path, cfg_options=None, work_dir=None, launcher='none', runner=False):
    """Load a config (a path, or ``package::name``: see :func:`config_file`), merge
    ``--cfg-options``, and set ``launcher`` and ``work_dir`` (the command line's, else the
    config's, else ``work_dirs/<config name>``).

    ``runner``: the config is for mmengine's runner (tools/train.py, tools/test.py), which reads
    only some of its top-level keys: an option that sets one it does not read is refused too.

    Raises:
        SyntaxError: The config or one of its ``_base_`` files is not valid Python; the message
            names the file and line.
        ConfigError: A key of ``cfg_options`` is not one of the config (see
            :func:`check_option_keys`), or the config's ``default_scope`` is not a toolbox's.
    """
    path = config_file(path)
    try:
        cfg = Config.fromfile(path)
    except SyntaxError as error:
        raise syntax_error_in(path, error) from None
    if cfg_options:
        check_option_keys(cfg, cfg_options, runner)
        cfg.merge_from_dict(cfg_options)
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('work_dirs', osp.splitext(osp.basename(path))[0])
    toolbox_of(cfg)
    return cfg


def check_option_keys(cfg, cfg_options, runner=False):
    """Raise if a ``--cfg-options`` key is not one of ``cfg``: merged, it would be ignored, or
    fail only once the run has started.

    Its first part must be a top-level key of ``cfg`` or a setting that mmengine's ``Runner``
    takes (``load_from``, ``randomness``, ``sync_bn``, ...). Each further part that the config
    does not have is checked against the dict it would go into (see :func:`_option_problem`): the
    arguments of the dict's registered ``type`` (``model.backbone.arhc``), or of what the runner
    builds from a dict without one (``train_cfg.max_epoch``); an index of a list must be one of
    its items.

    With ``runner``, the first part must also be a setting that mmengine's runner reads: the
    other top-level keys are variables of the config (``max_epochs``, ``data_root``,
    ``train_pipeline``), whose values its settings took when it was loaded. Setting one changes
    nothing; the message names the settings that hold its value.

    Raises:
        ConfigError: Names the unknown keys, each with the closest known names.
    """
    from mmengine.runner import Runner
    read = set(RUNNER_CFG_KEYS) | set(inspect.signature(Runner.__init__).parameters) - {'self'}
    known = set(cfg.keys()) | read
    unknown = sorted({key.split('.')[0] for key in cfg_options} - known)
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, sorted(known), n=3)
            hints.append(f"'{name}'" +
                         (f" (did you mean {' or '.join(map(repr, close))}?)" if close else ''))
        verb = 'is not a key' if len(unknown) == 1 else 'are not keys'
        raise ConfigError(f'--cfg-options: {", ".join(hints)} {verb} of {cfg.filename} (nor a '
                          'setting of the runner), so the option would be ignored')
    problems = [
        problem for key in sorted(cfg_options)
        if (problem := _option_problem(cfg, key, cfg_options)) is not None
    ]
    if runner:
        problems += [
            _unread_problem(cfg, key, read) for key in cfg_options if key.split('.')[0] not in read
        ]
    if problems:
        raise ConfigError(f'--cfg-options: {"; ".join(problems)}')


def _unread_problem(cfg, key, read):
    name, _, rest = key.partition('.')
    holders = [
        f'{path}.{rest}' if rest else path for path in _paths_of(cfg._cfg_dict, cfg[name])
        if path.split('.')[0] in read
    ]
    message = (f"'{key}': the runner does not read {name}, whose value the config's settings took "
               'when it was loaded, so the option would change nothing')
    if holders:
        message += f'; its value went to {", ".join(holders[:4])}: set those it stands for'
    return message


def _paths_of(node, value, prefix=''):
    """The dotted paths in ``node`` (dicts and lists) whose value is ``value``."""
    comparable = type(node) is type(value) or isinstance(node, dict) and isinstance(value, dict)
    if comparable and node == value:
        yield prefix
    items = node.items() if isinstance(
        node, dict) else enumerate(node) if isinstance(node, (list, tuple)) else ()
    for key, child in items:
        yield from _paths_of(child, value, f'{prefix}.{key}' if prefix else str(key))


def _option_problem(cfg, key, cfg_options):
    """What is wrong with the ``--cfg-options`` key ``key`` (whose first part is known), or None.

    The key is followed into the config for as long as the config has its parts. The first part
    it lacks must be an argument of what the dict there builds: its ``type`` (the option's own
    ``<dict>.type`` if it sets one), found in the registries of the config's scope, or for a dict
    without one what the runner builds from it (:func:`_untyped_arguments`); elsewhere it must
    not be a near miss of a key the dict has. Beyond that part the config says nothing.
    """
    parts = key.split('.')
    node = cfg.get(parts[0], {})  # {}: a setting of the runner that the config leaves out
    for depth, part in enumerate(parts[1:], 1):
        where = '.'.join(parts[:depth])
        if isinstance(node, (list, tuple)):
            if not part.isdigit() or int(part) >= len(node):
                items = (f'its items are {where}.0 to {where}.{len(node) - 1}'
                         if node else 'it is empty')
                return f"'{key}': {where} is a list of {len(node)}; {items}"
            node = node[int(part)]
        elif not isinstance(node, dict):
            return f"'{key}': {where} is {node!r}, not a dict"
        elif part in node:
            node = node[part]
        else:
            return _unknown_key_problem(cfg, key, part, where, node,
                                        cfg_options.get(f'{where}.type', node.get('type')))
    return None


def _unknown_key_problem(cfg, key, part, where, node, cls_type):
    if cls_type is None:
        owner, accepted = _untyped_arguments(where, node)
        if owner is None:
            close = difflib.get_close_matches(part, sorted(node), n=3, cutoff=NEAR_MISS)
            return f"'{key}': {where} has no key '{part}'{_did_you_mean(close)}" if close else None
    else:
        owner = cls_type if isinstance(cls_type, str) else getattr(cls_type, '__name__', cls_type)
        accepted = _type_arguments(cls_type, cfg.get('default_scope'))
        if where == 'optim_wrapper' and accepted is not None:
            # taken by mmengine's build_optim_wrapper, not by the wrapper itself
            accepted |= {'constructor', 'paramwise_cfg'}
    if accepted is None or part in accepted | {'type', '_scope_'}:
        return None
    close = difflib.get_close_matches(part, sorted(accepted | set(node)), n=3)
    return f"'{key}': {where} ({owner}) has no argument '{part}'{_did_you_mean(close)}"


def _did_you_mean(close):
    return f" (did you mean {' or '.join(map(repr, close))}?)" if close else ''


def _untyped_arguments(where, node):
    """What the runner builds from the dict ``node`` at ``where`` in a config when it has no
    ``type``, and the keys it can take: ``(name, keys)``, or ``(None, None)`` where that is not
    known."""
    from mmengine.runner import (EpochBasedTrainLoop, IterBasedTrainLoop, LogProcessor, Runner,
                                 TestLoop, ValLoop)
    from torch.utils.data import DataLoader
    if where.endswith('_dataloader'):
        # mmengine's build_dataloader takes these two itself
        extra = {'num_batch_per_epoch', 'disable_subprocess_warning'}
        return 'DataLoader', _type_arguments(DataLoader, None) | extra
    if where == 'train_cfg':
        loop = EpochBasedTrainLoop if node.get('by_epoch', True) else IterBasedTrainLoop
        return loop.__name__, _type_arguments(loop, None) | {'by_epoch'}
    builds = dict(
        val_cfg=ValLoop,
        test_cfg=TestLoop,
        log_processor=LogProcessor,
        randomness=Runner.set_randomness)
    if where in builds:
        return builds[where].__name__, _type_arguments(builds[where], None)
    read = dict(
        env_cfg={'cudnn_benchmark', 'mp_cfg', 'dist_cfg', 'resource_limit'},
        auto_scale_lr={'enable', 'base_batch_size'})
    if where in read:
        return 'the runner', read[where]
    return None, None


def _type_arguments(cls_type, scope):
    """The keyword arguments that a dict of ``type=cls_type`` can hold, or None if any.

    ``cls_type`` is a class or function, or its name in the registries of ``scope`` (all of
    them: a config's dict does not say which registry builds it; None if the name is in none).
    A class's ``**kwargs`` are followed up its bases, as ``super().__init__(**kwargs)`` passes
    them on, until a base takes no ``**kwargs``; one whose ``**kwargs`` reach ``object`` takes
    anything. ``CheckpointHook`` passes its own to ``Runner.save_checkpoint``.
    """
    if isinstance(cls_type, str):
        found = [_arguments(obj) for obj in _registered(cls_type, scope)]
        return None if not found or None in found else set().union(*found)
    return _arguments(cls_type)


def _arguments(obj):
    from mmengine.hooks import CheckpointHook
    from mmengine.runner import Runner
    if not inspect.isclass(obj):
        names, takes_more = _signature_arguments(obj) if callable(obj) else (None, True)
        return None if takes_more else names
    passed_on = {CheckpointHook: Runner.save_checkpoint}
    names = set()
    for cls in obj.__mro__:
        if cls is object:
            return None  # **kwargs that no base takes: kept, or used otherwise
        if '__init__' not in vars(cls):
            continue
        own, takes_more = _signature_arguments(cls.__init__)
        if own is None:
            return None
        names |= own
        if cls in passed_on:
            return names | _signature_arguments(passed_on[cls])[0]
        if not takes_more or cls is torch.nn.Module:  # Module's **kwargs are an error
            return names
    return None


def _signature_arguments(function):
    """``(keyword argument names, whether it takes **kwargs)`` of ``function``; ``(None, True)``
    where it has no signature that Python can read."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return None, True
    names = {p.name
             for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {'self'}
    return names, any(p.kind == p.VAR_KEYWORD for p in parameters)


def _registered(name, scope):
    """The distinct objects that ``name`` resolves to in the registries of ``scope`` (its
    ``<scope>.registry`` module; mmengine's where there is none) and their parents."""
    from mmengine import registry as mmengine_registry
    from mmengine.registry import Registry
    try:
        module = import_module(f'{scope}.registry') if scope else mmengine_registry
    except ImportError:
        module = mmengine_registry
    found = []
    for registry in vars(module).values():
        if isinstance(registry, Registry):
            try:
                obj = registry.get(name)
            except (KeyError, RuntimeError):  # no such name, or none importable by that name
                obj = None
            if obj is not None and obj not in found:
                found.append(obj)
    return found


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
