"""Pretrained weights: however the init type is spelled, a checkpoint loads into XFormer only
when it fits (every weight, its shape, no weight the backbone lacks), through the safe loader."""
import os
import re
from collections import OrderedDict

import pytest
import torch
from mmengine.model.weight_init import PretrainedInit

from mmxformer.checkpoint.safe_load import UnsafeCheckpointError
from mmxformer.checkpoint.state_dict import (PretrainedKeysError, check_pretrained_keys,
                                             is_pretrained_init, load_pretrained)
from mmxformer.models import XFormer

SPELLINGS = ['Pretrained', 'mmengine.Pretrained', PretrainedInit]


def classifier_state(backbone):
    """A classifier's state dict around ``backbone``: its weights under 'backbone.', a head."""
    state = OrderedDict(('backbone.' + key, value) for key, value in backbone.state_dict().items())
    state['head.fc.weight'] = torch.zeros(10, backbone.out_channels[-1])
    state['head.fc.bias'] = torch.zeros(10)
    return state


@pytest.fixture(scope='module')
def xfa_classifier(tmp_path_factory):
    """A checkpoint of an XFormer-XXS classifier (XFA, every stage) and its backbone's weights,
    distinct from any initialisation."""
    torch.manual_seed(1)
    backbone = XFormer('xxsmall')
    for param in backbone.state_dict().values():
        if param.is_floating_point():
            param.uniform_(-1, 1)
    path = tmp_path_factory.mktemp('ckpt') / 'cls.pth'
    torch.save(dict(state_dict=classifier_state(backbone), meta=dict()), path)
    return str(path), backbone.state_dict()


def assert_loaded(model, weights):
    state = model.state_dict()
    assert len(state) > 100
    for key, value in state.items():
        torch.testing.assert_close(value, weights[key], rtol=0, atol=0, msg=key)


@pytest.mark.parametrize('init_type', SPELLINGS, ids=str)
def test_every_spelling_loads_the_whole_backbone(xfa_classifier, init_type):
    """With 'mmengine.Pretrained', mmengine loaded before the blocks' own init_weights, which
    then overwrote the convs: every weight must be the checkpoint's."""
    path, weights = xfa_classifier
    model = XFormer('xxsmall', init_cfg=dict(type=init_type, checkpoint=path, prefix='backbone.'))
    model.init_weights()
    assert_loaded(model, weights)


@pytest.mark.parametrize('init_type', SPELLINGS, ids=str)
def test_the_xfa_checkpoint_does_not_load_into_self_attention(xfa_classifier, init_type):
    """The qkv and projection shapes agree: only the XFA-only weights tell them apart."""
    path, _ = xfa_classifier
    model = XFormer(
        'xxsmall',
        attn_cfg=dict(type='MultiheadSelfAttention'),
        init_cfg=dict(type=init_type, checkpoint=path, prefix='backbone.'))
    before = {key: value.clone() for key, value in model.state_dict().items()}
    with pytest.raises(PretrainedKeysError) as info:
        model.init_weights()
    message = str(info.value)
    assert re.search(r'and \d+ weights it lacks\.', message)
    assert re.search(
        r"Not in XFormer \(27\): 'stages\.2\.1\.layers\.0\.attn\.context_weight', "
        r"'stages\.2\.1\.layers\.0\.attn\.feature_weight', "
        r"'stages\.2\.1\.layers\.0\.attn\.temperature'", message)
    assert 'attn_cfg' in message
    # nothing was loaded
    assert all(
        torch.equal(value,
                    model.state_dict()[key]) for key, value in before.items()
        if key.startswith('stages.2.1.layers.0.attn.qkv'))


def test_missing_weights_are_an_error(xfa_classifier, tmp_path):
    path, weights = xfa_classifier
    state = classifier_state(XFormer('xxsmall'))
    del state['backbone.stages.3.1.layers.2.attn.temperature']
    torch.save(state, tmp_path / 'partial.pth')
    model = XFormer(
        'xxsmall',
        init_cfg=dict(
            type='mmengine.Pretrained',
            checkpoint=str(tmp_path / 'partial.pth'),
            prefix='backbone.'))
    with pytest.raises(
            PretrainedKeysError,
            match=r"Missing \(1\): 'stages\.3\.1\.layers\.2\.attn\.temperature'"):
        model.init_weights()


@pytest.mark.parametrize('out_indices', [(2, 3, 4), (1, 2)])
def test_stages_the_backbone_does_not_build_may_be_in_the_checkpoint(xfa_classifier, out_indices):
    path, weights = xfa_classifier
    model = XFormer(
        'xxsmall',
        out_indices=out_indices,
        init_cfg=dict(type='Pretrained', checkpoint=path, prefix='backbone.'))
    assert model.unbuilt_prefixes == tuple(f'stages.{i}.' for i in range(out_indices[-1] + 1, 6))
    model.init_weights()
    assert_loaded(model, weights)


def test_a_whole_model_check_refuses_unexpected_keys_unless_allowed(xfa_classifier):
    path, _ = xfa_classifier
    backbone = XFormer('xxsmall', out_indices=(2, 3, 4))
    with pytest.raises(PretrainedKeysError, match=r"Not in XFormer \(\d+\): 'stages\.5\.conv"):
        check_pretrained_keys(backbone, path, prefix='backbone.')
    keys = check_pretrained_keys(backbone, path, 'backbone.', allow_unexpected=('stages.5.', ))
    assert keys and all(not key.startswith('stages.5.') for key in keys)
    assert check_pretrained_keys(backbone, path, 'backbone.', allow_unexpected=True) == keys


def test_a_ddp_checkpoint_is_recognised(xfa_classifier, tmp_path):
    path, weights = xfa_classifier
    ddp_path = str(tmp_path / 'ddp.pth')
    state = torch.load(path, weights_only=True)['state_dict']
    torch.save(dict(state_dict={'module.' + key: value for key, value in state.items()}), ddp_path)
    model = XFormer(
        'xxsmall', init_cfg=dict(type='Pretrained', checkpoint=ddp_path, prefix='backbone.'))
    with pytest.raises(
            PretrainedKeysError,
            match=r"No key of the checkpoint starts with "
            r"'backbone\.'.*\nAll its keys start with 'module\.': it was saved from a "
            r"model wrapped in DistributedDataParallel\. Use "
            r"prefix='module\.backbone\.'"):
        model.init_weights()
    with pytest.raises(
            PretrainedKeysError,
            match=r"saved from a model wrapped in Distributed"
            r".*prefix='module\.'.*convert_checkpoint"):
        check_pretrained_keys(XFormer('xxsmall'), ddp_path)
    model = XFormer(
        'xxsmall',
        init_cfg=dict(  # what the message says to do
            type='Pretrained',
            checkpoint=ddp_path,
            prefix='module.backbone.'))
    model.init_weights()
    assert_loaded(model, weights)


def test_deployed_and_undeployed_checkpoints_are_told_apart(xfa_classifier):
    path, _ = xfa_classifier
    with pytest.raises(
            PretrainedKeysError,
            match=r'built with deploy=True; load the checkpoint'
            r' with deploy=False, then call switch_to_deploy\(\)'):
        load_pretrained(XFormer('xxsmall', deploy=True), path, 'backbone.')
    folded = XFormer('xxsmall')
    folded.switch_to_deploy()
    with pytest.raises(PretrainedKeysError, match=r'converted for deployment .*deploy=True'):
        load_pretrained(XFormer('xxsmall'), folded.state_dict())


def test_pretrained_goes_through_the_safe_loader(tmp_path, monkeypatch):
    """Even with torch's weights_only default turned off, and spelled as mmengine's own type,
    a code-running checkpoint is refused before anything of it runs."""
    ran = tmp_path / 'ran'

    class Payload:

        def __reduce__(self):
            return os.system, (f'touch {ran}', )

    path = tmp_path / 'evil.pth'
    torch.save(dict(state_dict=Payload()), path)
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    model = XFormer('xxsmall', init_cfg=dict(type='mmengine.Pretrained', checkpoint=str(path)))
    with pytest.raises(UnsafeCheckpointError):
        model.init_weights()
    assert not ran.exists()


@pytest.mark.parametrize('cfg,expected', [
    (dict(type='Pretrained', checkpoint='x'), True),
    (dict(type='mmengine.Pretrained', checkpoint='x'), True),
    (dict(type=PretrainedInit, checkpoint='x'), True),
    (dict(type='Kaiming'), False),
    (dict(type='mmengine.Kaiming'), False),
    (dict(type='NoSuchInit'), False),
    ('Pretrained', False),
])
def test_is_pretrained_init(cfg, expected):
    assert is_pretrained_init(cfg) is expected
