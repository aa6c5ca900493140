"""The model index against the configs: every config listed exists, builds, and has the
parameters, FLOPs and schedule its metafile states; every config is listed."""
import functools
import glob
import os.path as osp
import re

import pytest
import yaml
from mmengine.config import Config

from mmxformer.analysis.complexity import complexity
from mmxformer.checkpoint.model_index import load_model_index
from mmxformer.tasks import task_of
from mmxformer.utils.config import build_model

pytestmark = pytest.mark.needs('mmdet', 'mmseg', 'mmpretrain')

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
INDEX = osp.join(ROOT, 'model-index.yml')
MODELS = load_model_index(INDEX)
# Config folders the index does not list: bases, the deploy variants of listed models
# (mmpretrain's metafiles do not list its configs/*/deploy/ either), and mmdeploy's deploy configs.
UNLISTED_DIRS = ('_base_', 'deploy', 'mmdeploy')


def read_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)


def metafiles():
    return [osp.join(ROOT, path) for path in read_yaml(INDEX)['Import']]


@functools.lru_cache(maxsize=None)
def load(config):
    return Config.fromfile(osp.join(ROOT, config))


@functools.lru_cache(maxsize=None)
def measured(config, resolution):
    """``(parameters, flops)`` of a config's model, computed once per module."""
    return complexity(build_model(load(config)), resolution, task_of(load(config)))


def resolution_of(name, metadata):
    match = re.fullmatch(r'(\d+)x(\d+)', str(metadata.get('Resolution', '')))
    assert match, (f'{name}: Metadata.Resolution must give the input size the Parameters and '
                   f"FLOPs are for, as 'HxW' (e.g. 320x320), got {metadata.get('Resolution')!r}")
    return int(match.group(1)), int(match.group(2))


def assert_close(name, key, stated, actual):
    """Equal within the precision ``stated`` is written with (5580000: to 1e4; 5494588: to 1)."""
    digits = str(int(stated))
    unit = 10**(len(digits) - len(digits.rstrip('0')))
    assert abs(actual - stated) <= unit / 2, (
        f'{name}: the metafile says {key}: {stated}, the config gives {actual:.0f}; update the '
        'metafile (tools/analysis_tools/get_flops.py CONFIG --shape H W) or the config')


def test_index_imports_every_metafile():
    assert sorted(metafiles()) == sorted(glob.glob(osp.join(ROOT, 'configs', 'metafile*.yml')))


def test_every_config_is_listed():
    configs = {
        osp.relpath(path, ROOT)
        for path in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
        if not set(UNLISTED_DIRS) & set(osp.relpath(path, ROOT).split(osp.sep))
    }
    listed = {entry['Config'] for entry in MODELS.values()}
    assert configs - listed == set(), 'configs missing from the model index'
    assert listed - configs == set(), 'configs of the model index that do not exist'


@pytest.mark.parametrize('path', metafiles(), ids=osp.basename)
def test_models_belong_to_a_collection_of_their_metafile(path):
    metafile = read_yaml(path)
    collections = {collection['Name'] for collection in metafile['Collections']}
    for entry in metafile['Models']:
        assert entry['In Collection'] in collections, entry['Name']
        assert entry['Metadata'].get('Training Data'), entry['Name']


@pytest.mark.parametrize('name', sorted(MODELS))
def test_parameters_and_flops_are_those_of_the_config(name):
    entry = MODELS[name]
    assert osp.isfile(osp.join(ROOT, entry['Config'])), entry['Config']
    metadata = entry['Metadata']
    params, flops = measured(entry['Config'], resolution_of(name, metadata))
    assert_close(name, 'Parameters', metadata['Parameters'], params)
    assert_close(name, 'FLOPs', metadata['FLOPs'], flops)


@pytest.mark.parametrize('name', sorted(MODELS))
def test_schedule_is_that_of_the_config(name):
    metadata = MODELS[name]['Metadata']
    cfg = load(MODELS[name]['Config'])
    stated = {key: metadata[key] for key in ('Epochs', 'Iterations') if key in metadata}
    actual = {}
    if 'Epochs' in stated:  # passes over the data: a RepeatDataset's repeats count too
        actual['Epochs'] = cfg.train_cfg.max_epochs * cfg.train_dataloader.dataset.get('times', 1)
    if 'Iterations' in stated:
        actual['Iterations'] = cfg.train_cfg.max_iters
    assert stated == actual, f'{name}: the metafile says {stated}, the config gives {actual}'


def test_no_weights_are_published_as_the_readme_says():
    published = [name for name, entry in MODELS.items() if 'Weights' in entry]
    assert not published, (
        f'{published} have Weights: update the README (no checkpoint is published) and give each '
        'its SHA-256 (the name suffix of tools/model_converters/publish_model.py, or SHA256)')
