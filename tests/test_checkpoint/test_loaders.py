"""After ``import mmxformer`` every checkpoint that mmengine loads (``CheckpointLoader``: Pretrained
init, ``load_from``, ``resume``, the toolboxes' APIs) is unpickled with ``weights_only=True``, and
every one from a URL is a verified download into mmxformer's cache first. The files are served
on 127.0.0.1; a payload that ran would create a marker file."""
import functools
import hashlib
import http.server
import os
import os.path as osp
import subprocess
import sys
import threading
import types

import pytest
import torch
from conftest import digits_options, load_module
from mmengine.registry import DefaultScope
from mmengine.runner import checkpoint as mmengine_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader

import mmxformer  # noqa: F401 (installs the loaders)
from mmxformer.checkpoint.safe_load import NotACheckpointError, UnsafeCheckpointError
from mmxformer.models import XFormer
from mmxformer.utils.config import load_config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CLASSIFIER = osp.join(ROOT, 'configs/xformer-xxs_digits.py')
DETECTOR = osp.join(ROOT, 'configs/xformer_yolov3_digits.py')


class SystemPayload:
    """Unpickled, it runs ``touch target``."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return os.system, (f'touch {self.target}', )


def save_evil(path, marker):
    """A checkpoint-shaped file whose meta runs code; returns its SHA-256."""
    torch.save(
        dict(
            meta=dict(epoch=1, iter=1, payload=SystemPayload(marker)),
            state_dict=dict(w=torch.zeros(1)),
            optimizer=dict(state={}, param_groups=[])), path)
    return hashlib.sha256(open(path, 'rb').read()).hexdigest()


class QuietHandler(http.server.SimpleHTTPRequestHandler):

    def log_message(self, *args):
        pass


@pytest.fixture
def served(tmp_path, monkeypatch):
    """``(directory, base URL)``: the files of the directory over http. mmxformer's cache and
    torch's (where mmengine's own loader would download to) are fresh for the test."""
    directory = tmp_path / 'served'
    directory.mkdir()
    monkeypatch.setenv('MMXFORMER_HOME', str(tmp_path / 'mmxformer_home'))
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    handler = functools.partial(QuietHandler, directory=str(directory))
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs=dict(poll_interval=0.05), daemon=True)
    thread.start()
    yield directory, f'http://127.0.0.1:{httpd.server_address[1]}'
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def evil_url(served, tmp_path):
    """``(URL with the file's full SHA-256, marker)``: the download verifies, the file runs code
    if unpickled unsafely."""
    directory, base = served
    marker = tmp_path / 'pwned'
    sha256 = save_evil(directory / 'evil_20260101.pth', marker)
    return f'{base}/evil_20260101.pth#sha256={sha256}', marker


def test_a_code_running_checkpoint_over_http_is_refused(evil_url, tmp_path):
    url, marker = evil_url
    with pytest.raises(UnsafeCheckpointError, match=r'Refused to load http://.*posix\.system'):
        CheckpointLoader.load_checkpoint(url)
    assert not marker.exists()
    assert not (tmp_path / 'torch_home').exists(), "torch's hub cache is not used"


def test_pretrained_init_from_a_url_is_refused(evil_url):
    url, marker = evil_url
    backbone = XFormer('xxsmall', init_cfg=dict(type='Pretrained', checkpoint=url))
    with pytest.raises(UnsafeCheckpointError):
        backbone.init_weights()
    assert not marker.exists()


@pytest.mark.needs('mmpretrain')
def test_mmpretrain_get_model_from_a_url_is_refused(evil_url):
    import mmpretrain
    url, marker = evil_url
    with pytest.raises(UnsafeCheckpointError):
        mmpretrain.get_model('xformer-xxs_digits', pretrained=url)
    assert not marker.exists()


@pytest.mark.needs('mmdet')
def test_mmdet_init_detector_from_a_url_is_refused(evil_url):
    from mmdet.apis import init_detector
    url, marker = evil_url
    with pytest.raises(UnsafeCheckpointError):
        init_detector(osp.join(ROOT, 'configs/xformer_yolov3_digits.py'), url, device='cpu')
    assert not marker.exists()


def test_a_checkpoint_over_http_is_verified_into_the_cache(served, tmp_path):
    directory, base = served
    state_dict = dict(w=torch.arange(3.))
    torch.save(dict(state_dict=state_dict), directory / 'good.pth')
    sha256 = hashlib.sha256((directory / 'good.pth').read_bytes()).hexdigest()
    checkpoint = CheckpointLoader.load_checkpoint(f'{base}/good.pth#sha256={sha256}')
    assert checkpoint['state_dict']['w'].tolist() == [0., 1., 2.]
    assert os.listdir(tmp_path / 'mmxformer_home' / 'checkpoints') == ['good.pth']
    (directory / 'good.pth').write_bytes(b'swapped')  # the server changes the file
    with pytest.raises(ValueError, match=r'Refused to download http://.*good\.pth: over plain'):
        CheckpointLoader.load_checkpoint(f'{base}/good.pth')
    # the verified copy is used, not the server's new file
    checkpoint = CheckpointLoader.load_checkpoint(f'{base}/good.pth#sha256={sha256}')
    assert checkpoint['state_dict']['w'].tolist() == [0., 1., 2.]


def test_plain_http_without_the_full_hash_is_refused(served, tmp_path):
    directory, base = served
    marker = tmp_path / 'pwned'
    sha256 = save_evil(directory / 'evil.pth', marker)
    named = f'evil_20260101-{sha256[:8]}.pth'  # OpenMMLab's name: 32 bits of the hash
    os.rename(directory / 'evil.pth', directory / named)
    with pytest.raises(ValueError, match=r'Refused to download http://.*full SHA-256'):
        CheckpointLoader.load_checkpoint(f'{base}/{named}')
    assert not marker.exists()


def test_a_web_page_over_http_is_named(served):
    directory, base = served
    (directory / 'model.pth').write_text('<!DOCTYPE html><html>Sign in</html>')
    sha256 = hashlib.sha256((directory / 'model.pth').read_bytes()).hexdigest()
    url = f'{base}/model.pth#sha256={sha256}'
    with pytest.raises(NotACheckpointError) as info:
        CheckpointLoader.load_checkpoint(url)
    assert str(info.value).startswith(f'{url} is not a PyTorch checkpoint')
    assert 'HTML' in str(info.value) and 'weights_only=False' not in str(info.value)


def test_a_local_file_is_loaded_safely_whatever_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    marker = tmp_path / 'pwned'
    save_evil(tmp_path / 'evil.pth', marker)
    with pytest.raises(UnsafeCheckpointError, match='posix.system'):
        CheckpointLoader.load_checkpoint(str(tmp_path / 'evil.pth'))
    assert not marker.exists()


def _torchvision(monkeypatch, tmp_path, url, local):
    monkeypatch.setattr(mmengine_checkpoint, 'get_torchvision_models', lambda: dict(evil=url))
    return 'torchvision://evil'


def _openmmlab(monkeypatch, tmp_path, url, local):
    monkeypatch.setattr(mmengine_checkpoint, 'get_external_models', lambda: dict(evil=url))
    return 'open-mmlab://evil'


def _openmmlab_local(monkeypatch, tmp_path, url, local):
    monkeypatch.setenv('MMENGINE_HOME', osp.dirname(local))
    monkeypatch.setattr(mmengine_checkpoint, 'get_external_models',
                        lambda: dict(evil=osp.basename(local)))
    return 'openmmlab://evil'


def _mmcls(monkeypatch, tmp_path, url, local):
    monkeypatch.setattr(mmengine_checkpoint, 'get_mmcls_models', lambda: dict(evil=url))
    return 'mmcls://evil'


def _ceph(monkeypatch, tmp_path, url, local):
    backend = types.SimpleNamespace(get=lambda filename: open(local, 'rb').read())
    monkeypatch.setattr(mmengine_checkpoint, 'get_file_backend', lambda *args, **kwargs: backend)
    return 's3://bucket/evil.pth'


def _pavi(monkeypatch, tmp_path, url, local):

    class Model:
        name = 'evil.pth'

        def download(self, path):
            os.link(local, path)

    modelcloud = types.SimpleNamespace(get=lambda name: Model())
    monkeypatch.setitem(sys.modules, 'pavi', types.SimpleNamespace(modelcloud=modelcloud))
    return 'pavi://project/evil.pth'


@pytest.mark.parametrize('scheme',
                         [_torchvision, _openmmlab, _openmmlab_local, _mmcls, _ceph, _pavi])
def test_every_scheme_of_mmengine_loads_safely(scheme, evil_url, tmp_path, monkeypatch):
    """mmengine's other schemes call its http loader directly, or torch.load without
    weights_only: with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 their payloads ran."""
    url, marker = evil_url
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    local = str(tmp_path / 'local' / 'evil.pth')
    os.makedirs(osp.dirname(local))
    save_evil(local, marker)
    with pytest.raises(UnsafeCheckpointError):
        CheckpointLoader.load_checkpoint(scheme(monkeypatch, tmp_path, url, local))
    assert not marker.exists()


def test_import_mmxformer_replaces_every_loader_of_mmengine():
    code = ('from mmengine.runner.checkpoint import CheckpointLoader as C\n'
            'before = {p: l.__module__ for p, l in C._schemes.items()}\n'
            'import mmxformer\n'
            'after = {p: l.__module__ for p, l in C._schemes.items()}\n'
            'print(set(before.values()), set(after.values()), before.keys() == after.keys())')
    output = subprocess.run([sys.executable, '-c', code],
                            capture_output=True,
                            text=True,
                            check=True,
                            timeout=300).stdout.split('\n')[0]
    assert output == ("{'mmengine.runner.checkpoint'} {'mmxformer.checkpoint.loaders'} "
                      'True')


def classifier_options(root):
    return [
        f'train_dataloader.dataset.data_root={root}', f'val_dataloader.dataset.data_root={root}',
        f'test_dataloader.dataset.data_root={root}', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False', 'val_dataloader.num_workers=0',
        'val_dataloader.persistent_workers=False', 'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False', 'train_cfg.max_epochs=1'
    ]


def tool_env(tmp_path, **extra):
    return dict(
        os.environ,
        MMXFORMER_HOME=str(tmp_path / 'mmxformer_home'),
        TORCH_HOME=str(tmp_path / 'torch_home'),
        OMP_NUM_THREADS='1',
        **extra)


@pytest.mark.slow
@pytest.mark.needs('mmpretrain')
def test_train_resume_from_a_url_is_refused(run_tool, evil_url, tiny_sets, tmp_path):
    url, marker = evil_url
    result = run_tool(
        'train.py',
        CLASSIFIER,
        '--work-dir',
        str(tmp_path / 'work'),
        '--resume',
        url,
        '--cfg-options',
        *classifier_options(tiny_sets['cls']),
        cwd=tmp_path,
        env=tool_env(tmp_path),
        timeout=600)
    assert result.returncode != 0 and 'Refused to load http://' in result.stderr
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.needs('mmpretrain')
def test_train_load_from_a_local_file_is_refused_whatever_the_environment(
        run_tool, tiny_sets, tmp_path):
    marker = tmp_path / 'pwned'
    save_evil(tmp_path / 'evil.pth', marker)
    result = run_tool(
        'train.py',
        CLASSIFIER,
        '--work-dir',
        str(tmp_path / 'work'),
        '--cfg-options',
        f'load_from={tmp_path / "evil.pth"}',
        *classifier_options(tiny_sets['cls']),
        cwd=tmp_path,
        env=tool_env(tmp_path, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD='1'),
        timeout=600)
    assert result.returncode != 0 and f'Refused to load {tmp_path / "evil.pth"}' in result.stderr
    assert not marker.exists()


# The refusal of a stored config (test_stored_config.py checks it everywhere), filled in.
REFUSAL = load_module(osp.join(ROOT, 'tests/test_checkpoint/test_stored_config.py')).REFUSAL

# Each checkpoint given, through the toolbox's inferencer as a user would: `model=None` makes it
# rebuild the model from the config text stored in the checkpoint.
INFERENCER = """
import sys
import mmxformer
from {module} import {inferencer}
for weights in sys.argv[1:]:
    try:
        model = {inferencer}(model=None, weights=weights, device='cpu').model
    except Exception as error:
        print(f'refused: {{type(error).__name__}}: {{error}}')
    else:
        print(f'built: {{type(model).__name__}}')
"""


def run_inferencer(module, inferencer, checkpoints, cwd):
    """The outcome of each checkpoint, in a fresh interpreter: ``'built: MODEL'`` or
    ``'refused: ERROR: MESSAGE'``."""
    code = INFERENCER.format(module=module, inferencer=inferencer)
    result = subprocess.run([sys.executable, '-c', code, *checkpoints],
                            cwd=cwd,
                            capture_output=True,
                            text=True,
                            timeout=600,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line.startswith(('built', 'refused'))]


def save_stored_config(path, where, text):
    """A checkpoint of tensors only, with ``text`` as its stored config at ``where``."""
    stored = dict(meta=dict(cfg=text)) if where == 'meta' else dict(
        message_hub=dict(runtime_info=dict(cfg=text), log_scalars={}))
    torch.save(dict(state_dict=dict(w=torch.zeros(1)), **stored), path)
    return hashlib.sha256(open(path, 'rb').read()).hexdigest()


@pytest.fixture(scope='module')
def runner_checkpoint(tiny_sets, tmp_path_factory):
    """The detector's checkpoint as mmengine's runner saves it: the real config in
    ``meta['cfg']`` and the message hub's ``runtime_info`` (untrained: the weights do not
    matter here)."""
    from mmengine.runner import Runner
    work_dir = str(tmp_path_factory.mktemp('runner'))
    scopes = dict(DefaultScope._instance_dict)
    cfg = load_config(DETECTOR, digits_options('det', tiny_sets['det']), work_dir=work_dir)
    runner = Runner.from_cfg(cfg)
    runner.call_hook('before_run')  # RuntimeInfoHook: the config into the message hub
    runner.save_checkpoint(
        work_dir, 'epoch_0.pth', save_optimizer=False, save_param_scheduler=False)
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(scopes)
    return osp.join(work_dir, 'epoch_0.pth')


def test_a_runner_checkpoint_with_its_real_config_loads(runner_checkpoint):
    checkpoint = CheckpointLoader.load_checkpoint(runner_checkpoint)
    assert "type='YOLOV3'" in checkpoint['meta']['cfg']
    assert checkpoint['message_hub']['runtime_info']['cfg'] == checkpoint['meta']['cfg']


def payload(marker):
    """A stored config that runs ``touch marker`` when mmengine parses it (an ``import``
    statement would not: mmengine reads such a text as a lazy-import config)."""
    return f"model = dict(x=__import__('os').system('touch {marker}'))"


def refusal(source, where, marker):
    """The one line that refuses :func:`payload`."""
    return 'refused: UnsafeConfigError: ' + REFUSAL.format(
        source=source,
        where=where,
        reason="holds a call of __import__('os').system at line 1: "
        f'"__import__(\'os\').system(\'touch {marker}\')"')


@pytest.mark.slow
@pytest.mark.needs('mmdet')
def test_det_inferencer_never_runs_a_stored_config(runner_checkpoint, served, tmp_path):
    """``DetInferencer(model=None, weights=CKPT)`` ran the stored text with Config.fromstring:
    each payload touched its marker. A real checkpoint of the runner still builds."""
    directory, base = served
    local, hub = str(tmp_path / 'meta.pth'), str(tmp_path / 'hub.pth')
    save_stored_config(local, 'meta', payload('pwned1'))
    save_stored_config(hub, 'message_hub', payload('pwned2'))
    sha256 = save_stored_config(directory / 'served.pth', 'meta', payload('pwned3'))
    url = f'{base}/served.pth#sha256={sha256}'
    data = str(tmp_path / 'data.pth')  # data only: mmengine's registry imports the type
    save_stored_config(data, 'meta',
                       "model = dict(type='subprocess.getoutput', cmd='touch pwned4')")
    outcomes = run_inferencer('mmdet.apis', 'DetInferencer',
                              [local, hub, url, data, runner_checkpoint], tmp_path)
    assert outcomes[:3] == [
        refusal(local, "meta['cfg']", 'pwned1'),
        refusal(hub, "message_hub['runtime_info']['cfg']", 'pwned2'),
        refusal(url, "meta['cfg']", 'pwned3'),
    ]
    assert outcomes[3].startswith(
        f"refused: UnsafeConfigError: Refused to load {data}: the config text it stores in "
        "meta['cfg'] has type='subprocess.getoutput', which ")
    assert outcomes[4:] == ['built: YOLOV3']
    assert not any((tmp_path / f'pwned{index}').exists() for index in range(1, 5))


@pytest.mark.slow
@pytest.mark.needs('mmseg')
def test_seg_inferencer_never_runs_a_stored_config(tmp_path):
    local = str(tmp_path / 'meta.pth')
    save_stored_config(local, 'meta', payload('pwned'))
    assert run_inferencer('mmseg.apis', 'MMSegInferencer', [local],
                          tmp_path) == [refusal(local, "meta['cfg']", 'pwned')]
    assert not (tmp_path / 'pwned').exists()


@pytest.mark.parametrize('name,message', [
    ('open-mmlab://resnet50_v1cc', 'Unknown checkpoint open-mmlab://resnet50_v1cc: did you mean '
     r'open-mmlab://resnet50_v1c.*\? \d+ names are in mmengine\'s table of OpenMMLab weights '
     r'\(mmengine/hub/openmmlab.json, and .*open_mmlab.json if it exists\); use one of them, or '
     "give the checkpoint's URL or file instead$"),
    ('torchvision://resnet05', 'Unknown checkpoint torchvision://resnet05: did you mean '
     r"torchvision://resnet50.*\? \d+ names are in mmengine's table of torchvision's weights"),
    ('mmcls://no_such_net', r"Unknown checkpoint mmcls://no_such_net: \d+ names are in "
     "mmengine's table of mmcls weights"),
    ('openmmlab://', 'Unknown checkpoint openmmlab://: '),
])
def test_an_unknown_name_of_mmengine_s_tables_is_one_line(name, message, tmp_path, monkeypatch):
    monkeypatch.setenv('MMENGINE_HOME', str(tmp_path))
    with pytest.raises(ValueError, match=message):
        CheckpointLoader.load_checkpoint(name)


def test_torchvision_names_without_torchvision_are_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, 'torchvision', None)  # not installed
    with pytest.raises(
            ImportError,
            match=r'^torchvision://resnet50 needs torchvision, to know '
            r"its weights: install it \(pip install torchvision\), or give the "
            "checkpoint's URL$"):
        CheckpointLoader.load_checkpoint('torchvision://resnet50')
