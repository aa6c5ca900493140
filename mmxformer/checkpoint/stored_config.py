"""The config text a checkpoint stores, read as data.

mmengine's runner saves its config as text in ``meta['cfg']`` (``Config.pretty_text``), and
code of the toolboxes turns that text back into a config with ``Config.fromstring(text, '.py')``,
which *executes* it: mmengine's inferencers given ``model=None`` (``DetInferencer``,
``MMSegInferencer``; from ``message_hub['runtime_info']['cfg']`` first, then ``meta['cfg']``) and
the runner's resume (``meta['config']``). ``weights_only`` unpickling stops code in the pickle,
not in this text. And even a text of plain data can run code through what mmengine does with it:
``Config.fromfile`` imports the modules of ``custom_imports``, reads the files of ``_base_``,
substitutes ``{{ ... }}`` placeholders into the text before running it, and a registry given a
``type`` it does not know imports the dotted path and calls what it finds with the dict's other
keys (``dict(type='subprocess.getoutput', cmd=...)`` runs a command).

:func:`check_config_text` accepts what ``pretty_text`` writes, as data, and refuses the rest:

- statements: assignments of one name (not ``_base_``);
- values: literals (negative numbers too), ``dict(...)`` with keyword arguments (or one dict
  display, mmengine's form for keys that are not identifiers), dict displays, lists, tuples and
  sets, nested; no names, calls of anything else, attribute access, operators, lambdas,
  comprehensions or f-strings;
- meaning: a ``type`` (``constructor``, ``runner_type``) that a registry would resolve by
  importing must be an object registered in mmengine's registries; ``custom_imports``,
  ``default_scope`` and ``_scope_`` may only make mmengine import modules that are imported
  already, that belong to mmxformer or an OpenMMLab toolbox, or that do not exist.

It is parsed with :mod:`ast` and never evaluated.
"""
import ast
import importlib
import importlib.util
import inspect
import re
import sys
from typing import Iterator, Optional, Tuple

from mmengine.registry import Registry
from mmengine.registry import root as root_registries

#: Packages whose modules a stored config may make mmengine import: their code is what runs
#: anyway when the config is used (the toolboxes and mmxformer).
OPENMMLAB_PACKAGES = ('mmxformer', 'mmengine', 'mmcv', 'mmdet', 'mmseg', 'mmpretrain', 'mmcls',
                      'mmdeploy')

# Paths OpenMMLab's configs give as a type, which mmengine imports: pure functions (a policy of
# the FSDP wrapper, mmpretrain's MAE configs).
IMPORTED_TYPES = ('torch.distributed.fsdp.wrap.size_based_auto_wrap_policy', )
# Keys whose string a registry resolves (build_from_cfg's ``type``; the optimizer wrapper's
# ``constructor`` and the top-level ``runner_type`` are built as ``dict(type=...)``).
TYPE_KEYS = ('type', 'constructor', 'runner_type')
# Keys that make mmengine import ``<value>.registry`` (DefaultScope, Registry.switch_scope...).
SCOPE_KEYS = ('_scope_', 'default_scope')

# mmengine rewrites these placeholders in the text before it runs it (fileDirname,
# environment variables, _base_ values), so the text it runs is not the one checked here.
PLACEHOLDER = re.compile(r'\{\{.*?\}\}', re.S)
# Far above what pretty_text writes (tens of kB; a list of 20k class weights is 0.5 MB), and
# below what makes parsing take long: ast's nodes take up to a few hundred times the text.
MAX_TEXT_SIZE = 4 << 20
ALLOWED_CONSTANTS = (str, bytes, int, float, complex, bool, type(None), type(Ellipsis))
DESCRIPTIONS = {
    ast.Attribute: 'attribute access',
    ast.Name: 'a name',
    ast.Lambda: 'a lambda',
    ast.JoinedStr: 'an f-string',
    ast.ListComp: 'a comprehension',
    ast.SetComp: 'a comprehension',
    ast.DictComp: 'a comprehension',
    ast.GeneratorExp: 'a comprehension',
    ast.Import: 'an import',
    ast.ImportFrom: 'an import',
    ast.Starred: 'unpacking',
    ast.Subscript: 'subscription',
    ast.IfExp: 'a conditional expression',
    ast.NamedExpr: 'an assignment expression',
}
SNIPPET_LENGTH = 60


class ConfigTextError(ValueError):
    """A stored config text that is not only data; the message says what and where."""


def check_config_text(text: str) -> None:
    """Check that ``text`` is a config as mmengine's ``Config.pretty_text`` writes it: data that
    ``Config.fromstring(text, '.py')`` can run without running anything a file chose.

    Args:
        text (str): The stored config text.

    Raises:
        ConfigTextError: What in the text is not data (with its line), or why what it asks
            mmengine to import or build is refused.
    """
    if not isinstance(text, str):
        raise ConfigTextError(f'is a {type(text).__name__}, not the config text mmengine writes')
    if len(text) > MAX_TEXT_SIZE:
        raise ConfigTextError(f'is {len(text)} characters long, more than any config mmengine '
                              f'writes (at most {MAX_TEXT_SIZE} are read)')
    placeholder = PLACEHOLDER.search(text)
    if placeholder:
        raise ConfigTextError(f'holds the placeholder {_shorten(placeholder.group())!r}, which '
                              'mmengine would replace in the text before running it')
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as error:
        raise ConfigTextError(f'is not a Python config text ({type(error).__name__}: '
                              f'{_shorten(str(error))})') from None
    for statement in tree.body:
        if not (isinstance(statement, ast.Assign) and len(statement.targets) == 1
                and isinstance(statement.targets[0], ast.Name)):
            raise ConfigTextError(_not_data(statement, text))
        name = statement.targets[0].id
        if name == '_base_':
            raise ConfigTextError(f'sets _base_ (line {statement.lineno}), which makes mmengine '
                                  'read and run other config files')
        _check_value(statement.value, text)
        _check_meaning(name, statement.value)


def _check_value(node, text):
    """Raise unless ``node`` is a literal, a dict, list, tuple or set of them, or ``dict(...)``;
    check the keys of each dict that mmengine resolves."""
    if isinstance(node, ast.Constant) and isinstance(node.value, ALLOWED_CONSTANTS):
        return
    if (isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd))
            and isinstance(node.operand, ast.Constant) and isinstance(node.operand.value,
                                                                      (int, float, complex))):
        return
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        children = node.elts
    elif isinstance(node, ast.Dict):
        if None in node.keys:  # {**other}
            raise ConfigTextError(_not_data(node, text, 'unpacking'))
        children = node.keys + node.values
    elif _is_dict_call(node) and node.args:  # dict({...}): the display is the dict
        children = node.args
    elif _is_dict_call(node):
        children = [keyword.value for keyword in node.keywords]
    else:
        raise ConfigTextError(_not_data(node, text))
    for child in children:
        _check_value(child, text)
    for key, value in _dict_items(node):
        _check_meaning(key, value)


def _is_dict_call(node):
    """``dict(a=..., ...)``, or ``dict({...})`` as pretty_text writes keys that are not names."""
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == 'dict' and all(keyword.arg for keyword in node.keywords) and
            (not node.args
             or len(node.args) == 1 and not node.keywords and isinstance(node.args[0], ast.Dict)))


def _dict_items(node) -> Iterator[Tuple[str, ast.AST]]:
    """The (string key, value node) pairs of a dict display or a ``dict(a=...)`` call (none for
    other nodes, and for ``dict({...})``, whose display is visited itself)."""
    if isinstance(node, ast.Call):
        yield from ((keyword.arg, keyword.value) for keyword in node.keywords)
    elif isinstance(node, ast.Dict):
        yield from ((key.value, value) for key, value in zip(node.keys, node.values)
                    if isinstance(key, ast.Constant) and isinstance(key.value, str))


def _check_meaning(key, value):
    """Check what mmengine would import or resolve for ``key=value``."""
    if key == 'custom_imports':
        if _is_dict_call(value) and value.args:
            value = value.args[0]
        for name, imports in _dict_items(value):
            if name != 'imports':
                continue
            modules = imports.elts if isinstance(imports, (ast.List, ast.Tuple)) else [imports]
            for module in _strings(modules):
                _check_import(module, f'custom_imports naming {module!r}')
    if not (isinstance(value, ast.Constant) and isinstance(value.value, str)):
        return
    if key in SCOPE_KEYS:
        _check_import(f'{value.value}.registry', f'{key}={value.value!r}')
    elif key in TYPE_KEYS:
        _check_type(key, value.value)


def _strings(nodes):
    return [
        node.value for node in nodes
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def _check_type(key, name):
    """Raise unless mmengine's registries resolve ``name`` to a registered object, or to
    nothing at all, when their fallback (``get_object_from_string``) imports it as a path."""
    if name in IMPORTED_TYPES:
        return
    what = f'{key}={name!r}'
    if '.' in name:  # 'scope.Name': Registry.get imports '<scope>.registry' first
        _check_import(f'{name.split(".")[0]}.registry', what)
    found = _resolve(name, what)
    if found is None or inspect.ismodule(found) or id(found) in _registered_ids():
        return  # nothing (a registered name the registry finds itself) or nothing callable
    raise ConfigTextError(f'has {what}, which is not registered in mmengine\'s registries: '
                          f'mmengine would import {_qualified(found)} and call it with the '
                          'other keys of the dict')


def _resolve(name, what):
    """What mmengine's ``get_object_from_string(name)`` returns, importing only what
    :func:`_check_import` allows."""
    parts = name.split('.')
    index = 1
    module_name = parts[0]
    while True:
        module = _import(module_name, what)
        if module is None:
            return None
        if index == len(parts):
            return module
        found = getattr(module, parts[index], None)
        if found is not None and not inspect.ismodule(found):
            break
        module_name = f'{module_name}.{parts[index]}'
        index += 1
    found = module
    for part in parts[index:]:
        found = getattr(found, part, None)
        if found is None:
            return None
    return found


def _check_import(module_name, what):
    """Raise if importing ``module_name`` (and its parents) would run code that is neither
    imported already nor mmxformer's or a toolbox's."""
    parts = module_name.split('.')
    for end in range(1, len(parts) + 1):
        if _import(".".join(parts[:end]), what) is None:
            return


def _import(module_name, what) -> Optional[object]:
    """The module, imported if it is allowed; None where the import would fail (no such module);
    raises where it would run other code."""
    if module_name in sys.modules:
        return sys.modules[module_name]
    try:
        if module_name.split('.')[0] in OPENMMLAB_PACKAGES:
            return importlib.import_module(module_name)
        found = importlib.util.find_spec(module_name) is not None
    except Exception:  # mmengine would fail there too: no such module, or a broken one
        return None
    if found:
        raise ConfigTextError(f'has {what}, which makes mmengine import the module '
                              f'{module_name}: it is neither imported yet nor part of mmxformer '
                              'or an OpenMMLab toolbox (if you trust it, import it first)')
    return None


def _registered_ids():
    """The ids of every object in mmengine's registry tree (the roots and every scope's)."""
    registries = [value for value in vars(root_registries).values() if isinstance(value, Registry)]
    ids = set()
    while registries:
        registry = registries.pop()
        ids.update(id(value) for value in registry.module_dict.values())
        registries.extend(registry.children.values())
    return ids


def _qualified(found):
    module = getattr(found, '__module__', None)
    name = getattr(found, '__qualname__', None) or getattr(found, '__name__', None)
    return f'{module}.{name}' if module and name else repr(found)


def _not_data(node, text, kind=None):
    """What ``node`` is, where, and its text: the reason it is refused."""
    kind = kind or DESCRIPTIONS.get(type(node))
    if kind is None and isinstance(node, ast.Call):
        called = _shorten(ast.unparse(node.func))
        kind = ('dict() with other than keyword arguments'
                if called == 'dict' else f'a call of {called}')
    elif kind is None and isinstance(node, (ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare)):
        kind = 'an operator'
    elif kind is None and isinstance(node, ast.stmt):
        kind = 'a statement other than NAME = VALUE'
    elif kind is None:
        kind = f'{type(node).__name__} (not data)'
    snippet = ast.get_source_segment(text, node) or ast.unparse(node)
    return f'holds {kind} at line {node.lineno}: {_shorten(snippet)!r}'


def _shorten(text):
    text = ' '.join(text.split())
    return text if len(text) <= SNIPPET_LENGTH else text[:SNIPPET_LENGTH - 3] + '...'
