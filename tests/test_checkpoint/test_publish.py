import datetime
import os
import os.path as osp
import pathlib
import pickle
import re
import uuid

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.evaluator import BaseMetric
from mmengine.hooks import EMAHook
from mmengine.model import BaseModel
from mmengine.optim.scheduler.param_scheduler import OneCycleParamScheduler
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from mmengine.runner.checkpoint import CheckpointLoader
from torch.utils.data import Dataset

from mmxformer.checkpoint import weights_only
from mmxformer.checkpoint.publish import convert_checkpoint, publish_checkpoint
from mmxformer.checkpoint.safe_globals import SAFE_GLOBALS, install_safe_globals
from mmxformer.checkpoint.safe_load import UnsafeCheckpointError, load_checkpoint_safely
from mmxformer.checkpoint.state_dict import (PretrainedKeysError, check_pretrained_init,
                                             check_pretrained_keys, strip_prefix)
from mmxformer.checkpoint.weights_only import load_weights_only
from mmxformer.models import XFormer
from mmxformer.utils.fileio import file_sha256

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
#: torch >= 2.4: an allow-list that mmxformer extends; before, its loaders use their own unpickler
ALLOW_LIST = hasattr(torch.serialization, 'add_safe_globals')
needs_allow_list = pytest.mark.skipif(
    not ALLOW_LIST,
    reason='torch < 2.4 has no weights_only allow-list to extend (mmxformer loads '
    'with its own unpickler there: test_a_training_checkpoint_loads_on_any_torch)')


class ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8))
        self.head = nn.Linear(8, 1)

    def forward(self, inputs, targets, mode='tensor'):
        out = self.head(self.backbone(inputs)).squeeze(-1)
        if mode == 'loss':
            return dict(loss=((out - targets)**2).mean())
        if mode == 'predict':
            return list(out - targets)
        return out


class ToyData(Dataset):

    def __len__(self):
        return 16

    def __getitem__(self, index):
        inputs = torch.randn(4, generator=torch.Generator().manual_seed(index))
        return dict(inputs=inputs, targets=inputs.sum())


class Float32Score(BaseMetric):
    """Returns a np.float32, as mmseg's IoUMetric does: CheckpointHook(save_best=...) keeps it in
    the message hub as the best score."""

    def process(self, data_batch, data_samples):
        self.results.extend(float(error)**2 for error in data_samples)

    def compute_metrics(self, results):
        return dict(score=np.float32(-np.mean(results)))


def run_toy(work_dir, max_epochs, resume_from=None, scheduler='MultiStepLR', ema=False):
    loader = dict(
        dataset=ToyData(),
        batch_size=4,
        collate_fn=dict(type='default_collate'),
        sampler=dict(type='DefaultSampler', shuffle=True))
    schedulers = dict(
        MultiStepLR=dict(type='MultiStepLR', milestones=[1]),
        OneCycleLR=dict(type='OneCycleLR', eta_max=0.05, total_steps=8, by_epoch=False))
    checkpoint_hook = dict(type='CheckpointHook', interval=1, save_best='score', rule='greater')
    # Runner sets the global default scope: restore it so later builds are unaffected.
    with DefaultScope.overwrite_default_scope('mmengine'):
        runner = Runner(
            model=ToyModel(),
            work_dir=str(work_dir),
            experiment_name=f'toy_{uuid.uuid4().hex}',
            train_dataloader=loader,
            val_dataloader=dict(loader, sampler=dict(type='DefaultSampler', shuffle=False)),
            val_evaluator=dict(type=Float32Score),
            optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9)),
            param_scheduler=schedulers[scheduler],
            train_cfg=dict(by_epoch=True, max_epochs=max_epochs, val_interval=1),
            val_cfg=dict(),
            default_hooks=dict(checkpoint=checkpoint_hook, logger=dict(type='LoggerHook')),
            custom_hooks=[dict(type='EMAHook', momentum=0.5)] if ema else [],
            load_from=resume_from,
            resume=resume_from is not None,
            randomness=dict(seed=0),
            default_scope='mmengine')
        runner.train()
    return runner


@pytest.fixture
def bare_allow_list():
    """torch's own allow-list only, for the test; mmxformer's is restored afterwards."""
    if not ALLOW_LIST:  # nothing was added to torch's list
        yield
        return
    saved = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    yield
    torch.serialization.clear_safe_globals()
    torch.serialization.add_safe_globals(saved)


@pytest.fixture(scope='module')
def toy_run(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('toy')
    return work_dir, run_toy(work_dir, max_epochs=2, scheduler='OneCycleLR')


@needs_allow_list
def test_mmengine_checkpoint_needs_the_allow_list(toy_run, bare_allow_list):
    path = str(toy_run[0] / 'epoch_1.pth')
    with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer|numpy|getattr'):
        torch.load(path, weights_only=True)
    assert install_safe_globals()
    checkpoint = torch.load(path, weights_only=True)
    assert {'meta', 'state_dict', 'message_hub', 'optimizer', 'param_schedulers'} <= set(checkpoint)
    history = checkpoint['message_hub']['log_scalars']['train/loss']
    assert history.statistics('mean') == pytest.approx(history.mean())
    assert isinstance(checkpoint['message_hub']['runtime_info']['best_score'], np.float32)


def test_a_training_checkpoint_loads_on_any_torch(toy_run):
    """mmxformer's load reads all of mmengine's training state, with torch's allow-list extended
    (torch >= 2.4) or with its own unpickler; both give the same checkpoint, on this torch."""
    path = str(toy_run[0] / 'epoch_1.pth')
    checkpoint = load_weights_only(path)
    own = torch.load(path, weights_only=False, pickle_module=weights_only)
    assert {'meta', 'state_dict', 'message_hub', 'optimizer', 'param_schedulers'} <= set(checkpoint)
    for loaded in (checkpoint, own):
        history = loaded['message_hub']['log_scalars']['train/loss']
        assert history.statistics('mean') == pytest.approx(history.mean())
        assert isinstance(loaded['message_hub']['runtime_info']['best_score'], np.float32)
    assert own['param_schedulers'][0]['anneal_func'] is checkpoint['param_schedulers'][0][
        'anneal_func'] is OneCycleParamScheduler._annealing_cos
    assert own['message_hub']['runtime_info'] == checkpoint['message_hub']['runtime_info']
    for key, value in checkpoint['state_dict'].items():
        assert torch.equal(own['state_dict'][key], value)


@needs_allow_list
def test_install_is_idempotent():
    install_safe_globals()
    before = len(torch.serialization.get_safe_globals())
    install_safe_globals()
    assert len(torch.serialization.get_safe_globals()) == before >= len(SAFE_GLOBALS)


@pytest.mark.parametrize('scheduler', ['MultiStepLR', 'OneCycleLR'])
def test_resume_matches_an_uninterrupted_run(tmp_path, scheduler):
    install_safe_globals()
    full = run_toy(tmp_path / 'full', max_epochs=2, scheduler=scheduler)
    # mmengine's resume calls torch.load without weights_only: torch >= 2.6 makes it True
    resumed = run_toy(
        tmp_path / 'resumed',
        max_epochs=2,
        scheduler=scheduler,
        resume_from=str(tmp_path / 'full' / 'epoch_1.pth'))
    assert resumed.epoch == full.epoch == 2
    # the resumed run started at epoch 2: it never saved epoch 1
    assert sorted(p.name for p in (tmp_path / 'resumed').glob('epoch_*.pth')) == ['epoch_2.pth']
    assert resumed.message_hub.get_info('best_score') == full.message_hub.get_info('best_score')
    full_state, resumed_state = full.model.state_dict(), resumed.model.state_dict()
    for key in full_state:
        torch.testing.assert_close(resumed_state[key], full_state[key], rtol=0, atol=0)


class SystemPayload:

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return os.system, (f'touch {self.target}', )


class TouchPayload(SystemPayload):

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.target), )


class GetattrEscape(SystemPayload):
    """getattr(getattr, '__self__') is the builtins module: from there, eval and open."""

    def __reduce__(self):
        return getattr, (getattr, '__self__')


@pytest.mark.parametrize('payload', [SystemPayload, TouchPayload, GetattrEscape])
def test_code_in_a_checkpoint_is_refused_and_does_not_run(tmp_path, payload):
    target = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save(dict(state_dict=dict(w=torch.zeros(1)), meta=payload(target)), path)
    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint_safely(str(path))
    message = str(info.value)
    assert str(path) in message and 'malicious' in message and 'weights_only=True' in message
    assert re.search(r'posix\.system|pathlib\.Path|getattr', message)
    # mmengine's own loader (Pretrained init, resume) refuses it as well
    with pytest.raises(pickle.UnpicklingError):
        CheckpointLoader.load_checkpoint(str(path), map_location='cpu')
    # and so does the unpickler that torch < 2.4 loads with, on this torch too
    with pytest.raises(pickle.UnpicklingError, match=r'posix\.system|pathlib\.Path|getattr'):
        torch.load(path, weights_only=False, pickle_module=weights_only)
    assert not target.exists()


def test_numpy1_checkpoints_load(tmp_path):
    """Checkpoints written under numpy 1.x name numpy.core.multiarray, not numpy._core."""
    path = tmp_path / 'numpy1.pth'
    torch.save(
        dict(eta=np.float64(1.5), history=np.arange(3.)),
        path,
        _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    written = b'numpy._core.multiarray\n' if np.__version__ >= '2' else b'numpy.core.multiarray\n'
    assert written in data
    path.write_bytes(data.replace(written, b'numpy.core.multiarray\n'))
    checkpoint = load_checkpoint_safely(str(path))
    assert checkpoint['eta'] == 1.5 and checkpoint['history'].tolist() == [0., 1., 2.]


# Moving weights between tasks


@pytest.fixture(scope='module')
def classifier_checkpoint(tmp_path_factory):
    """A trained-classifier-like checkpoint: backbone.* and head.* keys, optimizer, message hub;
    every weight perturbed so that no default initialisation can equal it."""
    from mmpretrain.registry import MODELS
    classifier = MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=dict(type='XFormer', arch='xxsmall'),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=10, in_channels=320)))
    state_dict = {
        key: value + torch.randn_like(value) if value.is_floating_point() else value
        for key, value in classifier.state_dict().items()
    }
    path = tmp_path_factory.mktemp('cls') / 'classifier.pth'
    torch.save(
        dict(
            meta=dict(epoch=3),
            state_dict=state_dict,
            optimizer=dict(state={}, param_groups=[]),
            message_hub=dict(runtime_info=dict(eta=np.float64(0.)))), path)
    return str(path), state_dict


@pytest.mark.parametrize('out_indices', [(2, 3, 4), (1, 2, 3, 4)])
def test_classifier_backbone_loads_into_detection_and_segmentation(classifier_checkpoint,
                                                                   out_indices):
    path, classifier_state = classifier_checkpoint
    backbone = XFormer(
        'xxsmall',
        out_indices=out_indices,
        init_cfg=dict(type='Pretrained', checkpoint=path, prefix='backbone.'))
    backbone.init_weights()
    check_pretrained_init(backbone)
    state = backbone.state_dict()
    assert len(state) > 100
    for key, value in state.items():
        torch.testing.assert_close(value, classifier_state['backbone.' + key], rtol=0, atol=0)


def test_unrelated_keys_fail_loudly(tmp_path):
    path = tmp_path / 'resnet.pth'
    torch.save(
        dict(state_dict={f'backbone.layer{i}.conv.weight': torch.zeros(1)
                         for i in range(8)}), path)
    backbone = XFormer(
        'xxsmall',
        out_indices=(2, 3, 4),
        init_cfg=dict(type='Pretrained', checkpoint=str(path), prefix='backbone.'))
    with pytest.raises(PretrainedKeysError) as info:
        backbone.init_weights()  # mmengine alone would only log the missing keys
    message = str(info.value)
    assert "'backbone.'" in message and 'backbone.layer0.conv.weight' in message
    assert 'stem.conv.weight' in message
    assert re.search(r'0 of its \d+ weights found under', message)


def test_missing_prefix_and_wrong_arch_fail_loudly(classifier_checkpoint):
    path, _ = classifier_checkpoint
    with pytest.raises(PretrainedKeysError, match=r"under 'backbone\.', 'head\.'"):
        check_pretrained_keys(XFormer('xxsmall', out_indices=(2, 3, 4)), path)
    with pytest.raises(PretrainedKeysError, match=r"No key of the checkpoint starts with 'neck\.'"):
        check_pretrained_keys(XFormer('xxsmall'), path, prefix='neck')
    with pytest.raises(PretrainedKeysError, match=r'Other shapes \(\d+\): stages.* checkpoint'):
        check_pretrained_keys(XFormer('xsmall'), path, prefix='backbone.')


@pytest.mark.parametrize('keep_prefix', [True, False])
def test_convert_keeps_the_backbone_only(tmp_path, classifier_checkpoint, bare_allow_list,
                                         keep_prefix):
    path, classifier_state = classifier_checkpoint
    dst = str(tmp_path / 'backbone.pth')
    convert_checkpoint(path, dst, prefix='backbone.', keep_prefix=keep_prefix)
    converted = torch.load(dst, weights_only=True)  # torch's own allow-list is enough
    assert set(converted) == {'state_dict', 'meta'}
    prefix = 'backbone.' if keep_prefix else ''
    backbone_keys = [key for key in classifier_state if key.startswith('backbone.')]
    assert sorted(converted['state_dict']) == sorted(prefix + k[9:] for k in backbone_keys)
    init_cfg = dict(type='Pretrained', checkpoint=dst)
    if keep_prefix:
        init_cfg.update(prefix='backbone.')
    model = XFormer('xxsmall', out_indices=(2, 3, 4), init_cfg=init_cfg)
    model.init_weights()
    check_pretrained_init(model)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, classifier_state['backbone.' + key], rtol=0, atol=0)


def test_strip_prefix_adds_the_dot():
    assert list(strip_prefix({'backbone.a': 1, 'backbone_b': 2}, 'backbone')) == ['a']


# Publishing


@pytest.fixture(scope='module')
def ema_run(tmp_path_factory):
    install_safe_globals()
    work_dir = tmp_path_factory.mktemp('ema')
    runner = run_toy(work_dir, max_epochs=2, ema=True)
    ema_hook = next(hook for hook in runner.hooks if isinstance(hook, EMAHook))
    raw = {key: value.clone() for key, value in runner.model.state_dict().items()}
    ema = {key: value.clone() for key, value in ema_hook.ema_model.module.state_dict().items()}
    return str(work_dir / 'epoch_2.pth'), raw, ema


@pytest.mark.parametrize('use_ema', [True, False])
def test_publish(tmp_path, ema_run, bare_allow_list, use_ema):
    src, raw, ema = ema_run
    assert any(not torch.equal(raw[key], ema[key]) for key in raw)
    path, sha256 = publish_checkpoint(
        src, str(tmp_path), 'xformer-toy', ema=use_ema, date=datetime.date(2024, 5, 17))
    assert osp.basename(path) == f'xformer-toy_20240517-{sha256[:8]}.pth'
    assert file_sha256(path) == sha256
    assert os.listdir(tmp_path) == [osp.basename(path)]
    published = torch.load(path, weights_only=True)  # torch's own allow-list is enough
    assert set(published) == {'state_dict', 'meta'} and published['meta']['ema'] is use_ema
    expected = ema if use_ema else raw
    assert published['state_dict'].keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(published['state_dict'][key], value, rtol=0, atol=0)


def test_publish_refuses_ema_without_ema_hook(tmp_path, toy_run):
    with pytest.raises(ValueError, match='EMAHook'):
        publish_checkpoint(str(toy_run[0] / 'epoch_2.pth'), str(tmp_path), 'toy', ema=True)
    with pytest.raises(ValueError, match='plain file name'):
        publish_checkpoint(str(toy_run[0] / 'epoch_2.pth'), str(tmp_path), '../toy')
    assert os.listdir(tmp_path) == []


def test_publish_tool(load_tool, tmp_path, ema_run, capsys):
    tool = load_tool('model_converters/publish_model.py')
    path, sha256 = tool.main([ema_run[0], str(tmp_path), '--name', 'xformer-toy', '--ema'])
    assert capsys.readouterr().out.split() == [path, 'sha256:', sha256]
    assert re.fullmatch(rf'xformer-toy_\d{{8}}-{sha256[:8]}\.pth', osp.basename(path))
    with pytest.raises(SystemExit, match='can not be found|No such file'):
        tool.main([str(tmp_path / 'missing.pth'), str(tmp_path), '--name', 'toy'])
