"""The deploy configs of configs/deploy/ (as mmpretrain's configs/mobileone/deploy/): each is its
model config with the backbone folded, and what mmpretrain's own
tools/model_converters/reparameterize_model.py writes loads into it with the same outputs."""
import glob
import os.path as osp
import subprocess
import sys

import pytest
import torch
from conftest import randomise_batch_norms
from mmengine.config import Config
from torch.nn.modules.batchnorm import _BatchNorm

from mmxformer.checkpoint.state_dict import PretrainedKeysError, check_pretrained_keys
from mmxformer.registry import MODELS

pytestmark = pytest.mark.needs('mmpretrain')

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEPLOY_CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', 'deploy', '*.py')))


def model_config_of(deploy_config):
    """The config a deploy config derives from: its name without ``_deploy``, one folder up."""
    name = osp.basename(deploy_config).replace('_deploy_', '_')
    return osp.join(ROOT, 'configs', name)


def test_every_classifier_config_has_a_deploy_config():
    classifiers = [
        path for path in glob.glob(osp.join(ROOT, 'configs', '*.py'))
        if Config.fromfile(path).model.type == 'ImageClassifier'
    ]
    assert classifiers
    assert sorted(map(model_config_of, DEPLOY_CONFIGS)) == sorted(classifiers)


@pytest.mark.parametrize('path', DEPLOY_CONFIGS, ids=osp.basename)
def test_a_deploy_config_is_its_model_config_with_the_folded_backbone(path):
    deploy_cfg = Config.fromfile(path)
    cfg = Config.fromfile(model_config_of(path))
    assert not cfg.model.backbone.get('deploy', False)
    cfg.model.backbone.deploy = True
    assert deploy_cfg.to_dict() == cfg.to_dict()
    backbone = MODELS.build(deploy_cfg.model.backbone)
    assert not any(isinstance(module, _BatchNorm) for module in backbone.modules())


@pytest.mark.slow  # about 30 s: mmpretrain's script in a subprocess
def test_mmpretrain_reparameterize_model_output_loads_into_the_deploy_config(tmp_path):
    """mmpretrain's script itself, run as a user would (it calls ``switch_to_deploy()`` on the
    backbone of the classifier and saves its state dict), on a digits classifier checkpoint."""
    import mmpretrain
    from mmpretrain.apis import get_model

    # the script as the mmpretrain package installs it (its wheel ships tools/ under .mim)
    script = osp.join(
        osp.dirname(mmpretrain.__file__), '.mim', 'tools', 'model_converters',
        'reparameterize_model.py')
    config = osp.join(ROOT, 'configs', 'xformer-xxs_digits.py')
    deploy_config = osp.join(ROOT, 'configs', 'deploy', 'xformer-xxs_deploy_digits.py')
    model = get_model(config)
    randomise_batch_norms(model)
    checkpoint, converted = str(tmp_path / 'digits.pth'), str(tmp_path / 'digits_deploy.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict(epoch=4)), checkpoint)

    result = subprocess.run([sys.executable, script, config, checkpoint, converted],
                            cwd=ROOT,
                            capture_output=True,
                            text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    deployed = get_model(deploy_config, converted)
    check_pretrained_keys(deployed, converted)  # every weight there, nothing else
    with pytest.raises(PretrainedKeysError, match='load the checkpoint with deploy=False'):
        check_pretrained_keys(deployed, checkpoint)
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        expected = model.eval()(x, mode='tensor')
        torch.testing.assert_close(deployed(x, mode='tensor'), expected, rtol=0, atol=1e-4)
