"""The global random number generators' states in checkpoints, so that a resumed run goes on
drawing the numbers an uninterrupted run would have drawn.

mmengine saves weights, optimizer, schedulers and message hub, but not the generators: a resumed
run starts them afresh from the seed. Whatever draws from them in the training process then
repeats the draws of the first epoch: above all the data augmentation of a data loader without
workers (``num_workers=0``), e.g. mmdet's ``PhotoMetricDistortion`` drawing from numpy. (Loader
workers are re-seeded at every epoch by mmengine, the same way in both runs, and the samplers
have their own seeded generators.)
"""
import random

import numpy as np
import torch
from mmengine.dist import get_world_size
from mmengine.hooks import Hook

from mmxformer.registry import HOOKS

#: The checkpoint key. Top-level, so that published and converted checkpoints (which keep
#: ``state_dict`` and ``meta`` only) do not carry it.
KEY = 'random_state'


def get_random_state():
    """The states of Python's ``random``, numpy's global generator and torch's CPU and CUDA
    generators, as ``torch.load(weights_only=True)`` rebuilds them (tuples, ints, arrays,
    tensors)."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []
    return dict(
        python=random.getstate(),
        numpy=np.random.get_state(),
        torch=torch.get_rng_state(),
        cuda=cuda)


def set_random_state(state):
    """Restore what :func:`get_random_state` returned."""
    random.setstate(_tuples(state['python']))
    np.random.set_state(tuple(state['numpy']))
    torch.set_rng_state(state['torch'])
    if state['cuda'] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def _tuples(value):
    # random.setstate wants tuples; a checkpoint may give lists back.
    return tuple(_tuples(item) for item in value) if isinstance(value, (list, tuple)) else value


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Save the random generators' states in each checkpoint; restore them when a run resumes.

    They are restored just before training goes on (``before_train``), after mmengine has
    re-seeded the generators at resume time. A checkpoint loaded with ``load_from`` without
    ``resume`` (fine-tuning) restores nothing. In a distributed run the checkpoint holds rank 0's
    states only, so nothing is restored there (a warning says so).
    """

    priority = 'VERY_LOW'

    def __init__(self):
        self._pending = None

    def before_save_checkpoint(self, runner, checkpoint):
        checkpoint[KEY] = get_random_state()

    def after_load_checkpoint(self, runner, checkpoint):
        self._pending = (checkpoint.get(KEY), checkpoint.get('meta', {}))

    def before_train(self, runner):
        if self._pending is None:
            return
        state, meta = self._pending
        self._pending = None
        resumed = (runner.epoch, runner.iter) == (meta.get('epoch'), meta.get('iter'))
        if not resumed or runner.iter == 0:
            return
        if state is None:
            runner.logger.warning('The checkpoint holds no random generator states (saved '
                                  'without RandomStateHook): the resumed run draws other random '
                                  'numbers than an uninterrupted run would.')
        elif get_world_size() > 1:
            runner.logger.warning('Distributed run: the random generator states are not '
                                  "restored (the checkpoint holds rank 0's only).")
        else:
            set_random_state(state)
