"""The package's layout, read from its source: every import points down a floor or stays in
its own folder, no module imports itself through others (imports inside functions included),
and only the toolbox adapters (mmxformer/tasks/) compare toolbox names."""
import ast
import glob
import os.path as osp

import pytest
from conftest import ROOT

PACKAGE_DIR = osp.join(ROOT, 'mmxformer')
#: Lowest first. A module may import from a lower floor, or from its own unit (the top-level
#: folder or module it belongs to); ``mmxformer`` itself (``__init__``) is above all.
FLOORS = [
    ('mmxformer.registry', 'mmxformer.version'),
    ('mmxformer.utils', ),
    ('mmxformer.checkpoint', ),
    ('mmxformer.models', 'mmxformer.engine', 'mmxformer.data', 'mmxformer.visualization'),
    ('mmxformer.tasks', ),
    ('mmxformer.deployment', ),
    ('mmxformer.analysis', ),
    ('mmxformer.apis', 'mmxformer.cli'),
]
TOOLBOX_NAMES = {'mmpretrain', 'mmdet', 'mmseg'}


def module_files():
    """``{module name: file}`` of every module of the package."""
    files = {}
    for path in sorted(glob.glob(osp.join(PACKAGE_DIR, '**', '*.py'), recursive=True)):
        rel = osp.relpath(path, ROOT)[:-3].replace(osp.sep, '.')
        files[rel[:-len('.__init__')] if rel.endswith('.__init__') else rel] = path
    return files


def imports(name, path):
    """The mmxformer modules (or packages) that module ``name`` imports, anywhere in it."""
    is_package = path.endswith('__init__.py')
    targets = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                parts = name.split('.')
                parts = parts[:len(parts) - node.level + is_package]
                base = '.'.join(parts + ([base] if base else []))
            names = [f'{base}.{alias.name}' for alias in node.names]
        elif isinstance(node, ast.Import):
            base, names = '', [alias.name for alias in node.names]
        else:
            continue
        for target in [base, *names]:
            if target.split('.')[0] == 'mmxformer':
                targets.add(target)
    return targets


def import_graph():
    """``{module: the modules it imports}``, a ``from package import name`` resolved to the
    module ``name`` where there is one, else to the package."""
    files = module_files()
    graph = {}
    for name, path in files.items():
        edges = set()
        for target in imports(name, path):
            while target not in files:
                target = target.rpartition('.')[0]
            # Python starts the packages above a module before it; that is no import of its own
            if target and not name.startswith(target + '.'):
                edges.add(target)
        graph[name] = edges - {name}
    return graph


def unit(name):
    """The top-level folder or module of the package that ``name`` belongs to."""
    return '.'.join(name.split('.')[:2])


def floor(name):
    if name == 'mmxformer':
        return len(FLOORS)
    for level, units in enumerate(FLOORS):
        if unit(name) in units:
            return level
    raise AssertionError(f'{name} is on no floor of tests/test_layout.py: put it on one (and '
                         "in README.md's Layout)")


def test_every_import_points_down_or_stays_in_its_folder():
    graph = import_graph()
    assert {'mmxformer.registry', 'mmxformer.deployment.export.onnx'} <= set(graph)
    upward = sorted(f'{name} -> {target}' for name, targets in graph.items() for target in targets
                    if unit(target) != unit(name) and floor(target) >= floor(name))
    assert not upward, 'imports that do not point down:\n' + '\n'.join(upward)
    assert graph['mmxformer.registry'] == set(), 'registry.py imports nothing of mmxformer'


def reachable(graph, start):
    seen, todo = set(), [start]
    while todo:
        for target in graph[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def test_no_import_cycle():
    graph = import_graph()
    # a package's __init__ gathers its modules' names: importing it is importing them, so a
    # module that imports its own package's __init__ (or a parent's) would close a circle
    cycles = sorted(name for name in graph if name in reachable(graph, name))
    assert not cycles, f'modules that import themselves through others: {cycles}'


def test_building_the_backbone_imports_no_model_zoo_download_or_tool_code():
    reached = reachable(import_graph(), 'mmxformer.models')
    assert 'mmxformer.checkpoint.state_dict' in reached  # the pretrained-weights check
    forbidden = sorted(
        name for name in reached
        if unit(name) not in ('mmxformer.models', 'mmxformer.registry', 'mmxformer.utils',
                              'mmxformer.checkpoint') or name.startswith((
                                  'mmxformer.checkpoint.download', 'mmxformer.checkpoint.loaders')))
    assert not forbidden


def test_an_upward_import_is_found(tmp_path, monkeypatch):
    """The layout test can fail: a utils module that imports the deployment is caught."""
    files = module_files()
    bad = tmp_path / 'bad.py'
    bad.write_text('def f():\n    from ..deployment import deploy\n')
    monkeypatch.setattr(
        __import__(__name__), 'module_files', lambda: {
            **files, 'mmxformer.utils.bad': str(bad)
        })
    with pytest.raises(AssertionError, match=r'mmxformer.utils.bad -> mmxformer.deployment'):
        test_every_import_points_down_or_stays_in_its_folder()


def toolbox_comparisons(path):
    """``(line, text)`` of each place in a file that compares with a toolbox's name (``==``,
    ``!=``, ``in`` a literal collection) or keys a dict by one."""
    found = []
    for node in ast.walk(ast.parse(open(path).read())):
        literals = []
        if isinstance(node, ast.Compare):
            for operand in [node.left, *node.comparators]:
                literals += operand.elts if isinstance(operand, (ast.Tuple, ast.List,
                                                                 ast.Set)) else [operand]
        elif isinstance(node, ast.Dict):
            literals = [key for key in node.keys if key is not None]
        if any(isinstance(item, ast.Constant) and item.value in TOOLBOX_NAMES for item in literals):
            found.append((node.lineno, ast.unparse(node)[:80]))
    return found


def test_toolbox_names_are_compared_in_the_adapters_only():
    files = [
        path for path in module_files().values()
        if not path.startswith(osp.join(PACKAGE_DIR, 'tasks') + osp.sep)
    ]
    files += glob.glob(osp.join(ROOT, 'tools', '**', '*.py'), recursive=True)
    found = [
        f'{osp.relpath(path, ROOT)}:{line}: {text}' for path in files
        for line, text in toolbox_comparisons(path)
    ]
    assert not found, 'toolbox branches outside mmxformer/tasks/:\n' + '\n'.join(found)


def test_a_toolbox_branch_is_found(tmp_path):
    code = tmp_path / 'branch.py'
    code.write_text("def f(toolbox):\n    return toolbox == 'mmseg' or {'mmdet': 1}\n")
    assert [line for line, _ in toolbox_comparisons(str(code))] == [2, 2]
