"""RandomStateHook: a resumed run draws the random numbers an uninterrupted one would."""
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

import mmxformer  # noqa: F401 (registers the hook)
from mmxformer.checkpoint.safe_load import load_checkpoint_safely
from mmxformer.cli import add_random_state_hook
from mmxformer.engine.hooks import RandomStateHook, get_random_state, set_random_state


def draws():
    return random.random(), np.random.rand(), torch.rand(1).item()


def test_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    state = get_random_state()
    expected = draws()
    torch.save(dict(random_state=state), tmp_path / 'ckpt.pth')
    set_random_state(load_checkpoint_safely(str(tmp_path / 'ckpt.pth'))['random_state'])
    assert draws() == expected


def test_hook_is_added_once_and_keeps_the_others():
    cfg = Config(dict(custom_hooks=[dict(type='EMAHook')]))
    add_random_state_hook(cfg)
    add_random_state_hook(cfg)
    assert [hook['type'] for hook in cfg.custom_hooks] == ['EMAHook', 'RandomStateHook']
    cfg = Config(dict())
    add_random_state_hook(cfg)
    assert cfg.custom_hooks == [dict(type='RandomStateHook')]


class NoisyInputs(Dataset):
    """Inputs drawn from numpy's global generator, as a loader without workers augments."""

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return dict(inputs=torch.from_numpy(np.random.rand(2).astype(np.float32)))


class Regressor(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)
        nn.init.constant_(self.linear.weight, 0.5)  # the same in every run, whatever the seed
        nn.init.zeros_(self.linear.bias)

    def forward(self, inputs, data_samples=None, mode='loss'):
        return dict(loss=(self.linear(inputs) - 1).pow(2).mean())


def train(work_dir, max_epochs, hooked, load_from=None):
    runner = Runner(
        model=Regressor(),
        work_dir=str(work_dir),
        experiment_name=f'{work_dir.name}_{max_epochs}_{hooked}',
        train_dataloader=dict(
            dataset=NoisyInputs(),
            batch_size=2,
            num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=True),
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1)),
        custom_hooks=[dict(type='RandomStateHook')] if hooked else None,
        randomness=dict(seed=0),
        resume=load_from is not None,
        load_from=load_from,
        default_scope='mmengine')
    runner.train()
    return runner.model.state_dict()


@pytest.mark.parametrize('hooked', [True, False])
def test_resumed_training_matches_the_uninterrupted_one(tmp_path, hooked):
    straight = train(tmp_path / 'straight', 2, hooked)
    train(tmp_path / 'first_epoch', 1, hooked)
    resumed = train(tmp_path / 'resumed', 2, hooked, str(tmp_path / 'first_epoch/epoch_1.pth'))
    same = all(torch.equal(straight[key], resumed[key]) for key in straight)
    checkpoint = load_checkpoint_safely(str(tmp_path / 'first_epoch/epoch_1.pth'))
    assert ('random_state' in checkpoint) == hooked
    assert 'random_state' not in checkpoint['meta']  # published checkpoints keep meta
    # without the hook, epoch 2 of the resumed run replays epoch 1's inputs
    assert same == hooked


def test_only_a_resume_restores(tmp_path):
    """``load_from`` without ``resume`` (fine-tuning) starts at iteration 0: nothing restored."""
    state = get_random_state()
    expected = draws()
    checkpoint = dict(random_state=state, meta=dict(epoch=1, iter=2))
    hook, runner = RandomStateHook(), SimpleNamespace(epoch=0, iter=0)
    hook.after_load_checkpoint(runner, checkpoint)
    hook.before_train(runner)
    assert draws() != expected
    runner.epoch, runner.iter = 1, 2  # what a resume from that checkpoint leaves
    hook.after_load_checkpoint(runner, checkpoint)
    hook.before_train(runner)
    assert draws() == expected
