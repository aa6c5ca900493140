"""README.md and docs/ against the code: every Python block of the README runs, every config block
builds its model, the results table states what the metafiles state, every path and link of the
README and of docs/*.md exists, and the Layout section names the package's real tree.

The blocks are written for a user in the repository root after ``make demo`` and the digits
trainings. Each runs here in a fresh interpreter, in a fresh directory that holds exactly the
files the blocks read: ``configs`` (a link to the repository's), tiny digits sets at the paths of
the full ones, and checkpoints at the paths the trainings write them to, each holding the real
model of its config (initial weights) and the dataset meta a training would store.
"""
import ast
import glob
import json
import os
import os.path as osp
import re
import subprocess
import sys
import textwrap

import pytest
import yaml
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
README = osp.join(ROOT, 'README.md')
DOCS = sorted(glob.glob(osp.join(ROOT, 'docs', '*.md')))

pytestmark = pytest.mark.needs('mmdet', 'mmseg', 'mmpretrain')

#: The checkpoints the README's examples load, and the config each comes from.
CHECKPOINTS = {
    'work_dirs/demo_yolov3_digits/epoch_4.pth': 'configs/xformer_yolov3_digits.py',
    'work_dirs/xformer_mlp-decoder_digits/iter_1300.pth': 'configs/xformer_mlp-decoder_digits.py',
    'work_dirs/xformer-xxs_digits/epoch_4.pth': 'configs/xformer-xxs_digits.py',
}
#: The data sets the examples read images from: ``make_digits_<task>`` and its (tiny) arguments.
DATA_SETS = {
    'data/digits_det': ('det', dict(num_train=1, num_val=2)),
    'data/digits_seg': ('seg', dict(num_train=1, num_val=1)),
    'data/digits_cls': ('cls', dict(num_train=1, num_test=1)),
}
#: Paths written relative to the repository root; each one named in README or docs must exist.
REPO_DIRS = ('configs', 'docs', 'mmxformer', 'requirements', 'tests', 'tools')


def read(path):
    with open(path, encoding='utf-8') as f:
        return f.read()


def fenced_blocks(text, language):
    """``(line number, code)`` of every fenced block of ``language``."""
    pattern = re.compile(rf'^```{language}\n(.*?)^```$', re.S | re.M)
    return [(text.count('\n', 0, m.start()) + 1, m.group(1)) for m in pattern.finditer(text)]


def top_level_names(code):
    tree = ast.parse(code)
    return {
        target.id
        for node in tree.body if isinstance(node, ast.Assign) for target in node.targets
        if isinstance(target, ast.Name)
    }


def string_constants(code):
    return [
        node.value for node in ast.walk(ast.parse(code))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def is_config(code):
    """A config fragment: nothing but assignments at the top level (no import, no call to run)."""
    return all(isinstance(node, ast.Assign) for node in ast.parse(code).body)


PYTHON_BLOCKS = fenced_blocks(read(README), 'python')
CONFIG_BLOCKS = [block for block in PYTHON_BLOCKS if is_config(block[1])]
SCRIPT_BLOCKS = [block for block in PYTHON_BLOCKS if not is_config(block[1])]


def block_id(block):
    return f'README.md:{block[0]}'


def run_python(args, cwd, timeout=600):
    """A fresh interpreter with the repository on its path; the finished process."""
    env = dict(
        os.environ,
        MPLBACKEND='Agg',
        PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get('PYTHONPATH')])))
    return subprocess.run([sys.executable, *args],
                          cwd=cwd,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=timeout)


def assert_ran(proc, what):
    assert proc.returncode == 0, (
        f'{what} failed (exit status {proc.returncode}); fix the README or the code.\n'
        f'--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-8000:]}')


MAKE_FILES = textwrap.dedent('''
    import json
    import sys

    import torch
    from mmengine.config import Config
    from mmengine.registry import DATASETS, init_default_scope

    from mmxformer.data import digits
    from mmxformer.utils.config import build_model

    data_sets, checkpoints = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    for path, (task, kwargs) in data_sets.items():
        getattr(digits, f'make_digits_{task}')(path, **kwargs)
    for path, config in checkpoints.items():
        cfg = Config.fromfile(config)
        init_default_scope(cfg.default_scope)
        dataset = DATASETS.build(dict(cfg.test_dataloader.dataset, lazy_init=True))
        meta = dict(dataset_meta=dict(dataset.metainfo))
        torch.save(dict(state_dict=build_model(cfg).state_dict(), meta=meta), path)
''')


@pytest.fixture(scope='module')
def user_files(tmp_path_factory):
    """A directory with ``configs``, ``data`` and ``work_dirs`` as the README's examples expect
    them in the repository root."""
    root = tmp_path_factory.mktemp('readme_files')
    os.symlink(osp.join(ROOT, 'configs'), root / 'configs')
    for path in CHECKPOINTS:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
    assert_ran(
        run_python(
            ['-c', MAKE_FILES, json.dumps(DATA_SETS),
             json.dumps(CHECKPOINTS)], cwd=root),
        'making the checkpoints and images of the README examples')
    return root


@pytest.fixture
def user_dir(user_files, tmp_path):
    """A fresh working directory in which the example's inputs are where the README says."""
    for name in ('configs', 'data', 'work_dirs'):
        os.symlink(user_files / name, tmp_path / name)
    return tmp_path


def test_readme_has_the_blocks_it_promises():
    """Inference in each toolbox, and a config for each: a block dropped from the README, or no
    longer recognised as what it is, fails here rather than silently leaving the tests."""
    scripts = '\n'.join(code for _, code in SCRIPT_BLOCKS)
    for api in ('init_detector', 'inference_detector', 'DetInferencer', 'init_model', 'get_model',
                'inference_model', 'ImageClassificationInferencer'):
        assert re.search(rf'\b{api}\(', scripts), f'README.md: no Python example calls {api}'
    bases = ' '.join(code for _, code in CONFIG_BLOCKS)
    for toolbox in ('mmpretrain', 'mmdet', 'mmseg'):
        assert f"'{toolbox}::" in bases, f'README.md: no config block inherits a {toolbox} config'


@pytest.mark.parametrize('block', SCRIPT_BLOCKS, ids=block_id)
def test_inputs_of_example_are_made_here(block):
    """Every checkpoint and image an example names is one :func:`user_files` makes, so that a
    README that moves them says so here, with the table to update."""
    line, code = block
    for value in string_constants(code):
        if value.startswith('work_dirs/'):
            assert value in CHECKPOINTS, (
                f'README.md:{line} loads {value}; add it to CHECKPOINTS in this test')
        if value.startswith('data/'):
            assert any(value.startswith(root + '/') for root in DATA_SETS), (
                f'README.md:{line} reads {value}; add its set to DATA_SETS in this test')
        if value.startswith('configs/'):
            assert osp.isfile(osp.join(ROOT, value)), f'README.md:{line}: no {value}'


@pytest.mark.slow  # a fresh interpreter importing a toolbox: 15 s a block on 2 cores
@pytest.mark.parametrize('block', SCRIPT_BLOCKS, ids=block_id)
def test_example_runs(block, user_dir):
    line, code = block
    (user_dir / 'example.py').write_text(code)
    assert_ran(run_python(['example.py'], cwd=user_dir), f'The example at README.md:{line}')


BUILD_CONFIG = textwrap.dedent('''
    import sys

    import torch
    from mmengine.config import Config

    from mmxformer.utils.config import build_model

    model = build_model(Config.fromfile(sys.argv[1]))
    if type(model.backbone).__name__ != 'XFormer':
        sys.exit(f'the backbone is {type(model.backbone).__name__}, not XFormer')
    with torch.no_grad():
        model(torch.rand(1, 3, 64, 64), mode='tensor')
''')


@pytest.mark.slow
@pytest.mark.parametrize('block', CONFIG_BLOCKS, ids=block_id)
def test_config_block_builds_and_runs(block, tmp_path):
    """Merged with its ``_base_``, the block's model builds with an XFormer backbone and runs a
    forward pass: a neck or head whose channels do not match the backbone's fails."""
    line, code = block
    assert '_base_' in top_level_names(code), (
        f'README.md:{line} is a config fragment without _base_: give it the config it changes, '
        'so that it can be merged and built')
    (tmp_path / 'readme_config.py').write_text(code)
    assert_ran(
        run_python(['-c', BUILD_CONFIG, 'readme_config.py'], cwd=tmp_path),
        f'The config at README.md:{line}, merged with its _base_ and built,')


def metafile_models():
    models = {}
    for path in sorted(glob.glob(osp.join(ROOT, 'configs', 'metafile_*.yml'))):
        for model in yaml.safe_load(read(path))['Models']:
            models[model['Config']] = model
    return models


def results_rows():
    """``{config path: {column: cell}}`` of the README's results table."""
    section = read(README).split('\n## Results\n', 1)[1].split('\n## ', 1)[0]
    lines = [line for line in section.splitlines() if line.startswith('|')]
    header = [cell.strip() for cell in lines[0].strip('|').split('|')]
    rows = {}
    for line in lines[2:]:
        cells = dict(zip(header, (cell.strip() for cell in line.strip('|').split('|'))))
        link = re.fullmatch(r'\[[^\]]+\]\(([^)]+)\)', cells['config'])
        assert link, f'README.md results: the config cell {cells["config"]!r} is not a link'
        rows[link.group(1)] = cells
    return rows


def parse_amount(cell):
    """``'6.20 M'`` -> (6.2e6, 5e3): the value and half the unit of its last digit."""
    match = re.fullmatch(r'([\d.]+) ([MG])', cell)
    assert match, f'README.md results: {cell!r} is not written as "<number> M" or "<number> G"'
    number, unit = match.groups()
    scale = dict(M=1e6, G=1e9)[unit]
    decimals = len(number.split('.')[1]) if '.' in number else 0
    return float(number) * scale, 0.5 * scale * 10**-decimals


def schedule_of(config, metadata):
    """``'4 epochs'``, ``'1,300 iterations'``: the metafile's, else the config's ``train_cfg``."""
    if 'Epochs' in metadata:
        return f"{metadata['Epochs']} epochs"
    if 'Iterations' in metadata:
        return f"{metadata['Iterations']:,} iterations"
    train_cfg = Config.fromfile(osp.join(ROOT, config)).train_cfg
    if 'max_epochs' in train_cfg:
        return f'{train_cfg.max_epochs} epochs'
    return f'{train_cfg.max_iters:,} iterations'


def test_results_table_states_the_metafiles():
    models, rows = metafile_models(), results_rows()
    assert sorted(rows) == sorted(models), (
        'README.md results: one row per model of configs/metafile_*.yml, and no other')
    for config, model in models.items():
        row, meta = rows[config], model['Metadata']
        for column, key in (('params', 'Parameters'), ('FLOPs', 'FLOPs')):
            value, half_unit = parse_amount(row[column])
            assert abs(value - meta[key]) <= half_unit, (
                f'README.md results, {config}: {column} {row[column]}, the metafile {meta[key]}')
        assert meta['Resolution'].replace('x', '×') in row['data'], (config, meta['Resolution'])
        assert meta['Training Data'].lower() in row['data'].lower(), (config, row['data'])
        schedule = schedule_of(config, meta)
        assert row['schedule'] == schedule, f'README.md results, {config}: {schedule} expected'
        metrics = [
            value for result in model.get('Results', [])
            for value in (result.get('Metrics') or {}).values()
        ]
        for value in metrics:
            assert re.search(rf'\b{re.escape(str(value))}\b', row['metric']), (
                f'README.md results, {config}: the metafile measured {value}, the table says '
                f'{row["metric"]!r}')
        if not metrics:
            assert 'not trained here' in row['metric'], (config, row['metric'])
        weights = model.get('Weights')
        assert (weights in row['checkpoint']) if weights else ('not hosted' in row['checkpoint']), (
            f'README.md results, {config}: the checkpoint column must give the metafile\'s '
            f'Weights, or say "not hosted" when there are none')


def path_candidates(path):
    """``configs/metafile_{cls,det}.yml`` -> both names; globs are kept for :func:`glob.glob`."""
    match = re.search(r'\{([^{}]*)\}', path)
    if not match:
        return [path]
    return [
        candidate for option in match.group(1).split(',')
        for candidate in path_candidates(path[:match.start()] + option + path[match.end():])
    ]


REPO_PATH = re.compile(rf'(?<![\w./:-])((?:{"|".join(REPO_DIRS)})/[\w./*{{}},-]*)')


@pytest.mark.parametrize('doc', [README, *DOCS], ids=lambda path: osp.relpath(path, ROOT))
def test_every_repository_path_exists(doc):
    """Each ``configs/…``, ``tools/…``, ``mmxformer/…`` (etc.) path a page names, in prose or in
    commands, is in the repository (``{a,b}`` and ``*`` expanded)."""
    missing = set()
    for match in REPO_PATH.finditer(read(doc)):
        path = match.group(1).rstrip('.,')
        for candidate in path_candidates(path):
            if not glob.glob(osp.join(ROOT, candidate)):
                missing.add(candidate)
    assert not missing, f'{osp.relpath(doc, ROOT)} names paths that do not exist: {sorted(missing)}'


def github_anchor(heading):
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-')


def anchors(path):
    return {github_anchor(m.group(1)) for m in re.finditer(r'^#+ (.*)$', read(path), re.M)}


@pytest.mark.parametrize('doc', [README, *DOCS], ids=lambda path: osp.relpath(path, ROOT))
def test_every_relative_link_resolves(doc):
    broken = []
    for target in re.findall(r'\]\(([^)\s]+)\)', read(doc)):
        if re.match(r'[a-z]+:', target):
            continue
        file, _, anchor = target.partition('#')
        path = osp.normpath(osp.join(osp.dirname(doc), file)) if file else doc
        if not osp.exists(path):
            broken.append(target)
        elif anchor and anchor not in anchors(path):
            broken.append(f'{target} (no such heading)')
    assert not broken, f'{osp.relpath(doc, ROOT)}: broken links {broken}'


def layout_entries():
    """``(path, description)`` of each line of the README's Layout block, the path joined from the
    entries it is indented under (two spaces a level)."""
    section = read(README).split('\n## Layout\n', 1)[1]
    (_, block), = fenced_blocks(section.split('\n## ', 1)[0], '')
    parents, entries = [], []
    for line in block.splitlines():
        depth = (len(line) - len(line.lstrip(' '))) // 2
        name, _, description = line.strip().partition(' ')
        parents = parents[:depth]
        path = ''.join(parents) + name
        entries.append((path, description))
        if name.endswith('/'):
            parents.append(name)
    return entries


def test_layout_names_existing_paths():
    """Every entry exists, and so does every file its description names (in the entry's folder,
    or next to the file)."""
    missing = []
    for path, description in layout_entries():
        if not osp.exists(osp.join(ROOT, path)):
            missing.append(path)
        folder = path if path.endswith('/') else osp.dirname(path)
        for name in re.findall(r'\b[\w-]+\.(?:py|sh|md|yml)\b', description):
            if not glob.glob(osp.join(ROOT, folder, name)):
                missing.append(f'{folder}/{name}'.replace('//', '/'))
    assert not missing, f'README.md Layout names what does not exist: {missing}'


def test_layout_covers_every_folder_of_the_package_and_tools():
    """A subpackage or tool folder added without a Layout line fails here."""
    named = {path.rstrip('/') for path, _ in layout_entries()}
    named |= {osp.dirname(path) for path in named}
    folders = {
        osp.relpath(osp.dirname(path), ROOT)
        for top in ('mmxformer', 'tools')
        for path in glob.glob(osp.join(ROOT, top, '**', '*.*'), recursive=True)
        if '__pycache__' not in path and '.mim' not in path
    }
    assert not folders - named, f'README.md Layout lacks the folders {sorted(folders - named)}'
