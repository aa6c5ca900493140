"""OpenMMLab's `mim` conventions: a built mmxformer ships its model index, configs and tools in
``mmxformer/.mim/``, and mim finds them there."""
import functools
import http.server
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import threading
import zipfile

import pytest
import torch

from mmxformer.checkpoint.model_index import load_model_index
from mmxformer.checkpoint.publish import publish_checkpoint
from mmxformer.data.digits import make_digits_det
from mmxformer.utils.config import build_model, load_config

pytestmark = pytest.mark.needs('mmdet', 'mim')

pytest.importorskip('mim')

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MODELS = load_model_index(osp.join(ROOT, 'model-index.yml'))
MIM = [sys.executable, '-c', 'import sys; from mim.cli import cli; sys.exit(cli())']


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp('wheel')
    run([
        sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-w', out, ROOT
    ])
    return next(out.glob('mmxformer-*.whl'))


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    """An environment where mmxformer is installed as the README installs it, `pip install .`
    (into a folder of its own, put on PYTHONPATH), not the editable checkout: mim looks for a
    package next to its metadata, which an editable install's is not."""
    target = tmp_path_factory.mktemp('site')
    run([
        sys.executable, '-m', 'pip', 'install', '--no-deps', '--no-build-isolation', '--target',
        target, ROOT
    ])
    return dict(os.environ, PYTHONPATH=str(target))


def run(command, **kwargs):
    result = subprocess.run([str(arg) for arg in command],
                            capture_output=True,
                            text=True,
                            timeout=600,
                            **kwargs)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_wheel_ships_the_index_configs_and_tools(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {'mmxformer/.mim/model-index.yml', 'mmxformer/.mim/tools/train.py'}
    expected |= {f'mmxformer/.mim/{entry["Config"]}' for entry in MODELS.values()}
    expected |= {f'mmxformer/.mim/configs/metafile_{task}.yml' for task in ('cls', 'det', 'seg')}
    assert expected - names == set()


def test_mim_lists_every_model_with_its_config(installed):
    code = ('import json; from mim.commands.search import get_model_info; '
            "print(json.dumps(get_model_info('mmxformer', shown_fields=['config'], to_dict=True)))")
    listed = json.loads(run([sys.executable, '-c', code], env=installed).stdout.splitlines()[-1])
    assert listed == {name: dict(config=entry['Config']) for name, entry in MODELS.items()}
    searched = run([*MIM, 'search', 'mmxformer'], env=installed).stdout
    assert all(name in searched for name in MODELS)


def test_mim_download_needs_published_weights(installed, tmp_path):
    """`mim download` fetches a model's checkpoint, then dumps its config. mmxformer publishes no
    checkpoint yet, and mim (0.3.8) then stops at its own check that the index has Weights:
    offline, before any download, writing nothing. The next test shows the download once one is."""
    name = 'xformer_yolov3_digits'
    result = subprocess.run([*MIM, 'download', 'mmxformer', '--config', name, '--dest', tmp_path],
                            env=installed,
                            cwd=tmp_path,
                            capture_output=True,
                            text=True,
                            timeout=300)
    assert result.returncode != 0
    assert "but got {'weight'}" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def served(tmp_path):
    """A directory served over HTTP on 127.0.0.1: the release host."""
    root = tmp_path / 'host'
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f'http://127.0.0.1:{httpd.server_address[1]}'
    httpd.shutdown()
    httpd.server_close()


def test_mim_download_fetches_a_published_checkpoint(installed, served, tmp_path):
    """What `mim download` does once a checkpoint is published: the release file of a real model
    (tools/model_converters/publish_model.py) is served, a copy of the installed package gets the
    Weights entry the metafile would then have, and mim fetches the checkpoint and dumps the
    config."""
    name = 'xformer_yolov3_digits'
    model = build_model(load_config(osp.join(ROOT, MODELS[name]['Config'])))
    torch.save(dict(state_dict=model.state_dict(), meta=dict(seed=0)), tmp_path / 'epoch_4.pth')
    release, _ = publish_checkpoint(tmp_path / 'epoch_4.pth', served[0], name)
    url = f'{served[1]}/{osp.basename(release)}'

    site = tmp_path / 'site'
    shutil.copytree(installed['PYTHONPATH'], site)
    metafile = site / 'mmxformer' / '.mim' / 'configs' / 'metafile_det.yml'
    entry = f'  - Name: {name}\n'
    text = metafile.read_text()
    assert entry in text
    metafile.write_text(text.replace(entry, f'{entry}    Weights: {url}\n'))

    dest = tmp_path / 'dest'
    dest.mkdir()
    run([*MIM, 'download', 'mmxformer', '--config', name, '--dest', dest],
        env=dict(installed, PYTHONPATH=str(site)),
        cwd=tmp_path)
    fetched = dest / osp.basename(release)
    assert fetched.read_bytes() == open(release, 'rb').read()
    state_dict = torch.load(fetched, weights_only=True)['state_dict']
    assert state_dict.keys() == model.state_dict().keys()
    assert load_config(str(dest / f'{name}.py')).model.backbone.type == 'XFormer'


def train_options(root):
    return [
        f'train_dataloader.dataset.data_root={root}',
        f'val_dataloader.dataset.data_root={root}',
        f'test_dataloader.dataset.data_root={root}',
        f'val_evaluator.ann_file={root}/annotations/instances_val2017.json',
        f'test_evaluator.ann_file={root}/annotations/instances_val2017.json',
        'train_dataloader.num_workers=0',
        'val_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'val_dataloader.persistent_workers=False',
        'train_cfg.max_epochs=0'  # build the model, data and hooks, then stop
    ]


@pytest.mark.slow
def test_mim_train_mmdet_with_a_config_path(tmp_path):
    root = make_digits_det(tmp_path / 'digits', num_train=4, num_val=2, seed=1)
    config = osp.join(ROOT, 'configs', 'xformer_yolov3_digits.py')
    result = run([
        *MIM, 'train', 'mmdet', config, '--work-dir', tmp_path / 'work', '--cfg-options',
        *train_options(root)
    ],
                 cwd=tmp_path)
    assert osp.join('mmdet', '.mim', 'tools', 'train.py') in result.stdout
    assert 'Training finished successfully' in result.stdout
    assert (tmp_path / 'work' / 'xformer_yolov3_digits.py').is_file()


@pytest.mark.slow
def test_mim_train_mmxformer_with_a_config_name(installed, tmp_path):
    root = make_digits_det(tmp_path / 'digits', num_train=4, num_val=2, seed=1)
    result = run([
        *MIM, 'train', 'mmxformer', 'xformer_yolov3_digits.py', '--work-dir', tmp_path / 'work',
        '--cfg-options', *train_options(root)
    ],
                 env=installed,
                 cwd=tmp_path)
    mim_dir = osp.join(installed['PYTHONPATH'], 'mmxformer', '.mim')
    assert f'{mim_dir}/configs/xformer_yolov3_digits.py' in result.stdout
    assert f'{mim_dir}/tools/train.py' in result.stdout
    assert 'Training finished successfully' in result.stdout


@pytest.mark.slow
def test_mim_test_mmxformer_with_a_config_name(installed, tmp_path):
    root = make_digits_det(tmp_path / 'digits', num_train=4, num_val=2, seed=1)
    model = build_model(load_config(osp.join(ROOT, MODELS['xformer_yolov3_digits']['Config'])))
    torch.save(dict(state_dict=model.state_dict(), meta=dict(seed=0)), tmp_path / 'model.pth')
    result = run([
        *MIM, 'test', 'mmxformer', 'xformer_yolov3_digits.py', '--checkpoint', tmp_path /
        'model.pth', '--work-dir', tmp_path / 'work', '--cfg-options', *train_options(root)
    ],
                 env=installed,
                 cwd=tmp_path)
    mim_dir = osp.join(installed['PYTHONPATH'], 'mmxformer', '.mim')
    assert f'{mim_dir}/tools/test.py' in result.stdout
    assert 'coco/bbox_mAP_50' in result.stdout
