"""mmxformer's classifiers by name in mmpretrain: get_model, inference_model, the inferencer."""
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

import mmxformer  # noqa: F401
from mmxformer.checkpoint.model_index import (find_cls_metafile, model_names,
                                              register_mmpretrain_models)
from mmxformer.data.digits import DIGIT_CLASSES, make_digits_cls

mmpretrain = pytest.importorskip('mmpretrain')


@pytest.fixture(scope='module')
def registered():
    """The names ``import mmxformer`` (above) registered."""
    metafile, _ = find_cls_metafile()
    return model_names(metafile)


def test_a_bare_import_registers_every_name_for_the_model_api(tmp_path):
    """In a fresh interpreter, ``import mmxformer`` alone: every name of the classification
    metafile in ``list_models``, ``get_model``, ``inference_model`` and the inferencer."""
    script = """
import numpy as np
import mmxformer
import mmpretrain
from mmxformer.checkpoint.model_index import find_cls_metafile, model_names
names = model_names(find_cls_metafile()[0])
assert names and set(names) <= set(mmpretrain.list_models('*xformer*')), names
image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
for name in names:
    model = mmpretrain.get_model(name)
    result = mmpretrain.inference_model(model, image)
    inferencer = mmpretrain.ImageClassificationInferencer(name, pretrained=False)
    assert inferencer(image)[0]['pred_scores'].shape == result['pred_scores'].shape
    print('classes:', name, result['pred_scores'].shape[0])
"""
    result = subprocess.run([sys.executable, '-c', script],
                            cwd=tmp_path,
                            capture_output=True,
                            text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    classes = {'in1k': '1000', 'digits': '10'}
    printed = dict(re.findall(r'classes: (\S+) (\d+)', result.stdout))
    metafile, _ = find_cls_metafile()
    assert printed == {name: classes[name.rsplit('_', 1)[1]] for name in model_names(metafile)}


@pytest.fixture(scope='module')
def digit_image(tmp_path_factory):
    """A file with a real handwritten digit (a held-out one of the test split)."""
    root = make_digits_cls(
        tmp_path_factory.mktemp('digits') / 'digits_cls', num_train=10, num_test=10)
    path = sorted((root / 'test').glob('*/*.png'))[0]
    return str(path)


def test_every_model_of_the_metafile_is_registered(registered):
    metafile, _ = find_cls_metafile()
    assert set(registered) <= set(mmpretrain.list_models('xformer'))
    assert set(registered) <= set(mmpretrain.list_models(task='Image Classification'))


def test_registering_twice_is_a_no_op(registered):
    assert register_mmpretrain_models() == registered


def test_a_name_taken_by_another_metafile_is_an_error(tmp_path, registered):
    metafile = tmp_path / 'configs' / 'metafile.yml'
    metafile.parent.mkdir()
    metafile.write_text(yaml.safe_dump(dict(Models=[dict(Name=registered[0], Config='x.py')])))
    with pytest.raises(ValueError, match='already registered'):
        register_mmpretrain_models(str(metafile))


def test_without_mmpretrain_nothing_is_registered(monkeypatch):
    monkeypatch.setitem(sys.modules, 'mmpretrain.apis', None)
    assert register_mmpretrain_models() == []


def test_metafile_parameters_match_the_configs(registered):
    from mmpretrain.apis import ModelHub
    for name in registered:
        metainfo = ModelHub.get(name)
        model = mmpretrain.get_model(name)
        assert sum(p.numel() for p in model.parameters()) == metainfo.metadata.parameters, name


def test_get_model_and_inference_on_a_real_photo():
    sklearn_datasets = pytest.importorskip('sklearn.datasets')
    photo = np.ascontiguousarray(sklearn_datasets.load_sample_image('china.jpg')[..., ::-1])
    model = mmpretrain.get_model('xformer-xxs_8xb128_in1k')
    result = mmpretrain.inference_model(model, photo)
    assert result['pred_scores'].shape == (1000, )
    imagenet_classes = mmpretrain.datasets.ImageNet.METAINFO['classes']
    assert result['pred_class'] == imagenet_classes[result['pred_label']]


def test_checkpoint_path_is_loaded_by_name(tmp_path, digit_image):
    model = mmpretrain.get_model('xformer-xxs_digits')
    bias = torch.zeros(10)
    bias[7] = 100.  # outweighs any image: a model that loaded this checkpoint says '7'
    with torch.no_grad():
        model.head.fc.bias.copy_(bias)
    checkpoint = str(tmp_path / 'digits.pth')
    torch.save(
        dict(state_dict=model.state_dict(), meta=dict(dataset_meta=dict(classes=DIGIT_CLASSES))),
        checkpoint)

    loaded = mmpretrain.get_model('xformer-xxs_digits', pretrained=checkpoint)
    assert torch.equal(loaded.head.fc.bias, bias)
    assert mmpretrain.inference_model(loaded, digit_image)['pred_class'] == '7'

    inferencer = mmpretrain.ImageClassificationInferencer(
        'xformer-xxs_digits', pretrained=checkpoint)
    result = inferencer(digit_image)[0]
    assert (result['pred_label'], result['pred_class']) == (7, '7')


def test_inferencer_by_name_without_checkpoint(digit_image):
    inferencer = mmpretrain.ImageClassificationInferencer('xformer-xxs_digits', pretrained=False)
    result = inferencer(digit_image)[0]
    assert result['pred_scores'].shape == (10, )
    assert result['pred_label'] == result['pred_scores'].argmax()
