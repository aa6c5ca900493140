"""tools/train.py --resume: a run killed after an epoch and resumed ends with the same weights as
a run that was never interrupted."""
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
import torch

from mmxformer.checkpoint.safe_load import load_checkpoint_safely
from mmxformer.data.digits import make_digits_det

pytestmark = pytest.mark.needs('mmdet')

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DIGITS = osp.join(ROOT, 'configs/xformer_yolov3_digits.py')


def train_command(root, work_dir, *extra):
    """The digits detector with XFormer-XXS, 2 epochs of 2 iterations (8 images, batch 4), a
    checkpoint after each epoch, no validation, fixed seed, deterministic algorithms."""
    ann = osp.join(root, 'annotations/instances_val2017.json')
    return [
        sys.executable,
        osp.join(ROOT, 'tools/train.py'), DIGITS, '--work-dir',
        str(work_dir), *extra, '--cfg-options', 'model.backbone.arch=xxsmall',
        'model.neck.in_channels=[80,64,48]', f'train_dataloader.dataset.data_root={root}',
        f'val_dataloader.dataset.data_root={root}', f'test_dataloader.dataset.data_root={root}',
        f'val_evaluator.ann_file={ann}', f'test_evaluator.ann_file={ann}',
        'train_dataloader.batch_size=4', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False', 'val_dataloader.num_workers=0',
        'val_dataloader.persistent_workers=False', 'train_cfg.max_epochs=2',
        'train_cfg.val_interval=100', 'default_hooks.checkpoint.interval=1',
        'default_hooks.checkpoint.max_keep_ckpts=-1', 'default_hooks.logger.interval=1',
        'randomness.seed=0', 'randomness.deterministic=True'
    ]


def run(command, cwd):
    result = subprocess.run(
        command,
        cwd=cwd,
        env=dict(os.environ, OMP_NUM_THREADS='1'),
        capture_output=True,
        text=True,
        timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def run_until_checkpoint(command, cwd, work_dir, name, timeout=600):
    """Start a run and SIGKILL it once ``name`` is saved (named in ``last_checkpoint``, which
    mmengine writes after the file)."""
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=dict(os.environ, OMP_NUM_THREADS='1'),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    last = work_dir / 'last_checkpoint'
    deadline = time.monotonic() + timeout
    try:
        while not (last.is_file() and last.read_text().strip().endswith(name)):
            assert process.poll() is None, (f'the run ended (code {process.returncode}) '
                                            f'before saving {name}')
            assert time.monotonic() < deadline, f'no {name} after {timeout} s'
            time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()


def final_weights(work_dir):
    checkpoint = load_checkpoint_safely(str(work_dir / 'epoch_2.pth'))
    assert (checkpoint['meta']['epoch'], checkpoint['meta']['iter']) == (2, 4)
    return checkpoint['state_dict']


@pytest.mark.slow
def test_killed_and_resumed_run_ends_like_an_uninterrupted_one(tmp_path):
    root = str(make_digits_det(tmp_path / 'digits', num_train=8, num_val=2, seed=3))
    straight, interrupted = tmp_path / 'straight', tmp_path / 'interrupted'
    run(train_command(root, straight), tmp_path)

    run_until_checkpoint(train_command(root, interrupted), tmp_path, interrupted, 'epoch_1.pth')
    assert not (interrupted / 'epoch_2.pth').exists(), 'killed too late: epoch 2 was finished'
    output = run(train_command(root, interrupted, '--resume'), tmp_path)
    assert 'resumed epoch: 1, iter: 2' in output

    expected, resumed = final_weights(straight), final_weights(interrupted)
    assert list(resumed) == list(expected)
    differ = [key for key in expected if not torch.equal(resumed[key], expected[key])]
    assert differ == [], f'{len(differ)} of {len(expected)} tensors differ, e.g. {differ[:3]}'
    initial = load_checkpoint_safely(str(interrupted / 'epoch_1.pth'))['state_dict']
    assert any(not torch.equal(initial[key], expected[key]) for key in expected), \
        'epoch 2 changed nothing: the comparison would prove nothing'
