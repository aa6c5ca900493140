"""The config text a checkpoint stores is read as data: what mmengine writes there loads, anything
that would run code (in the text, or through what mmengine does with it) is refused, naming the
checkpoint and the place. The toolboxes' own APIs are tried in a fresh interpreter in
test_loaders.py."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.runner.checkpoint import CheckpointLoader

import mmxformer  # noqa: F401 (installs the loaders)
from mmxformer.checkpoint.safe_load import (NotACheckpointError, UnsafeConfigError,
                                            load_checkpoint_safely)
from mmxformer.checkpoint.stored_config import ConfigTextError, check_config_text

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', '*.py')))

#: The one line of a refusal (``{source}``, ``{where}``, ``{reason}`` filled in).
REFUSAL = ("Refused to load {source}: the config text it stores in {where} {reason}. mmengine "
           'runs that text as Python (Config.fromstring), so mmxformer accepts there only data as '
           'mmengine writes it (NAME = literals, dict(...), lists, tuples and sets, types its '
           "registries know). Give the model's config file instead of the stored one (e.g. "
           'DetInferencer(model=CONFIG, weights=...)) and, if you trust the file, delete {where} '
           'from it (torch.load(..., weights_only=True), del, torch.save).')


@pytest.mark.parametrize('config', CONFIGS, ids=osp.basename)
def test_the_configs_as_mmengine_writes_them_are_data(config):
    check_config_text(Config.fromfile(config).pretty_text)


@pytest.mark.parametrize(
    'text',
    [
        '',
        '\n',  # what a runner built from arguments (no config file) stores
        "x = dict({'a b': 1, 'type': 'CocoDataset'})",  # pretty_text's form for odd keys
        "x = (-1, -2.5e-3, +3, 1j, None, True, ..., b'raw', 'text')",
        'x = {1, 2}\ny = [dict(a=(1, [2, {3}]), b=dict()), {"k": {"n": [-1]}}]',
        "custom_imports = dict(imports=['mmxformer', 'mmdet.models'], allow_failed_imports=False)",
        "custom_imports = dict(imports='os')",  # imported already: nothing runs
        "default_scope = 'mmdet'\nmodel = dict(_scope_='mmseg', type='EncoderDecoder')",
        # registered names, with or without scope, and registered objects by path
        "m = dict(type='mmdet.YOLOV3', loss=dict(type='CrossEntropyLoss'), nms=dict(type='nms'))",
        "o = dict(type='torch.optim.SGD', lr=0.1)\np = dict(type='mmdet.models.YOLOV3')",
        "w = dict(type='torch.distributed.fsdp.wrap.size_based_auto_wrap_policy')",
        "m = dict(type='NotRegisteredAnywhere', _scope_='no_such_package')",  # fails, runs nothing
    ])
def test_what_mmengine_writes_is_accepted(text):
    check_config_text(text)


@pytest.mark.parametrize(
    'text,reason',
    [
        ('import os', "holds an import at line 1: 'import os'"),
        ("from os import system\nsystem('id')",
         "holds an import at line 1: 'from os import system'"),
        ("x = 1\nx = __import__('os').system('id')",
         "holds a call of __import__('os').system at line 2: \"__import__('os').system('id')\""),
        ("x = open('/etc/passwd')", 'holds a call of open at line 1'),
        ('x = os.path', "holds attribute access at line 1: 'os.path'"),
        ('x = eval', "holds a name at line 1: 'eval'"),
        ('x = lambda: 0', 'holds a lambda at line 1'),
        ('x = [i for i in range(3)]', 'holds a comprehension at line 1'),
        ("x = f'{1}'", 'holds an f-string at line 1'),
        ('x = 2 ** 99999999', 'holds an operator at line 1'),
        ('x = -(-1)', 'holds an operator at line 1'),
        ('x = dict(**y)', 'holds dict() with other than keyword arguments at line 1'),
        ('x = {**y}', 'holds unpacking at line 1'),
        ('x = [*y]', 'holds unpacking at line 1'),
        ("x = 'ab'[0]", 'holds subscription at line 1'),
        ('def f():\n    pass', 'holds a statement other than NAME = VALUE at line 1'),
        ('a = b = 1', 'holds a statement other than NAME = VALUE at line 1'),
        ("with read_base():\n    x = 1", 'holds a statement other than NAME = VALUE'),
        ("_base_ = '/tmp/evil.py'",
         'sets _base_ (line 1), which makes mmengine read and run other'),
        ("x = '{{$HOME}}'", "holds the placeholder '{{$HOME}}', which mmengine would replace"),
        ("x = '{{ fileDirname }}'", "holds the placeholder '{{ fileDirname }}'"),
        ('x = (', 'is not a Python config text (SyntaxError:'),
        ('x = 1\0', 'is not a Python config text (SyntaxError: source code string cannot contain'),
        ('x = ' + '[' * 300 + ']' * 300,
         'is not a Python config text (SyntaxError: too many nested'),
        ('x = [' + '1,' * (2 << 20) + ']', f'is {(4 << 20) + 6} characters long, more than any '
         'config mmengine writes (at most 4194304 are read)'),
        # data that runs code through mmengine: a type its registries resolve by importing
        ("m = dict(type='subprocess.getoutput', cmd='id')",
         "has type='subprocess.getoutput', which is not registered in mmengine's registries: "
         'mmengine would import subprocess.getoutput and call it with the other keys of the dict'),
        ("m = dict({'type': 'os.system', 'a b': 1})", "has type='os.system', which is not"),
        ("d = dict(type='mmengine.dump', obj='x', file='/home/u/.bashrc')",
         "has type='mmengine.dump', which is not registered"),
        ("o = dict(constructor='shutil.rmtree', path='/')", "has constructor='shutil.rmtree'"),
        ("runner_type = 'os.system'", "has runner_type='os.system'"),
        # ... or modules it imports that nothing imported yet
        ("custom_imports = dict(imports=['antigravity'])",
         "has custom_imports naming 'antigravity', which makes mmengine import the module "
         'antigravity: it is neither imported yet nor part of mmxformer or an OpenMMLab toolbox '
         '(if you trust it, import it first)'),
        ("custom_imports = dict({'imports': 'this'})", "has custom_imports naming 'this'"),
        ("default_scope = 'antigravity'", "has default_scope='antigravity', which makes mmengine "
         'import the module antigravity'),
        ("m = dict(_scope_='this', type='X')", "has _scope_='this'"),
        ("m = dict(type='antigravity')", "has type='antigravity', which makes mmengine import"),
        ("m = dict(type='this.X')", "has type='this.X'"),
    ])
def test_code_and_what_would_run_code_are_refused(text, reason):
    with pytest.raises(ConfigTextError) as info:
        check_config_text(text)
    assert str(info.value).startswith(reason)


def save(path, **checkpoint):
    torch.save(dict(state_dict=dict(w=torch.zeros(1)), **checkpoint), path)
    return str(path)


PAYLOAD = "import os\nos.system('touch pwned')\nmodel = dict(type='YOLOV3')\n"


@pytest.mark.parametrize('where,checkpoint', [
    ("meta['cfg']", dict(meta=dict(cfg=PAYLOAD))),
    ("meta['config']", dict(meta=dict(epoch=1, config=PAYLOAD))),
    ("message_hub['runtime_info']['cfg']", dict(message_hub=dict(runtime_info=dict(cfg=PAYLOAD)))),
])
def test_every_place_of_a_stored_config_is_checked(tmp_path, where, checkpoint):
    path = save(tmp_path / 'model.pth', **checkpoint)
    with pytest.raises(UnsafeConfigError) as info:
        CheckpointLoader.load_checkpoint(path)
    assert str(info.value) == REFUSAL.format(
        source=path, where=where, reason="holds an import at line 1: 'import os'")


@pytest.mark.parametrize('cfg', [dict(model=dict(type='YOLOV3')), None, b'model = 1'])
def test_a_stored_config_that_is_no_text_is_refused(tmp_path, cfg):
    path = save(tmp_path / 'model.pth', meta=dict(cfg=cfg))
    with pytest.raises(UnsafeConfigError) as info:
        load_checkpoint_safely(path)
    assert str(info.value) == REFUSAL.format(
        source=path,
        where="meta['cfg']",
        reason=f'is a {type(cfg).__name__}, not the config text mmengine writes')


@pytest.mark.parametrize('checkpoint,where,kind', [
    (dict(meta='dataset_meta'), 'meta', 'str'),
    (dict(meta=[('cfg', 'x = 1')]), 'meta', 'list'),
    (dict(meta=dict(dataset_meta=None)), "meta['dataset_meta']", 'NoneType'),
    (dict(message_hub=None), 'message_hub', 'NoneType'),
    (dict(message_hub=dict(runtime_info=['cfg'])), "message_hub['runtime_info']", 'list'),
])
def test_meta_data_that_is_no_dict_is_named(tmp_path, checkpoint, where, kind):
    """mmengine's code indexes them: a str meta ended in a TypeError inside DetInferencer, a
    dataset_meta of None in an AttributeError."""
    path = save(tmp_path / 'model.pth', **checkpoint)
    with pytest.raises(NotACheckpointError) as info:
        load_checkpoint_safely(path)
    assert str(info.value) == (
        f'{path}: its {where} is a {kind}, not a dict, and the code of mmengine and the '
        f'toolboxes indexes it as one; re-save the file without {where}, or with a dict there')


def test_a_state_dict_with_weights_named_meta_loads(tmp_path):
    path = tmp_path / 'plain.pth'
    torch.save(dict(meta=torch.ones(2), message_hub=torch.zeros(1)), path)
    assert load_checkpoint_safely(str(path))['meta'].tolist() == [1., 1.]
