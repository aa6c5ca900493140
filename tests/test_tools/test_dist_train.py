import importlib.util
import json
import os
import os.path as osp
import socket
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmxformer.checkpoint.safe_load import load_checkpoint_safely
from mmxformer.data.digits import make_digits_det
from mmxformer.engine.distributed import setup_cpu_distributed
from mmxformer.utils.config import load_config

pytestmark = pytest.mark.needs('mmdet')

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
HERE = osp.dirname(osp.abspath(__file__))
DIGITS = osp.join(ROOT, 'configs/xformer_yolov3_digits.py')
XXS = {'model.backbone.arch': 'xxsmall', 'model.neck.in_channels': [80, 64, 48]}


def load_digest_hook():
    """The runs' plugin, imported as their config's ``custom_imports`` imports it (the
    checkpoints store that config, which names it)."""
    spec = importlib.util.spec_from_file_location('rank_digest_hook',
                                                  osp.join(HERE, 'rank_digest_hook.py'))
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault('rank_digest_hook', module)
    spec.loader.exec_module(module)
    return module


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def tool_env(**extra):
    """The environment of a tool run: this Python first on PATH (the .sh scripts call
    ``python``), one thread per process (two processes share the cores)."""
    env = dict(os.environ, OMP_NUM_THREADS='1', **extra)
    env['PATH'] = osp.dirname(sys.executable) + os.pathsep + env['PATH']
    return env


@pytest.mark.slow
def test_two_process_training_on_cpu(tmp_path):
    root = str(make_digits_det(tmp_path / 'digits', num_train=12, num_val=2, seed=1))
    ann = osp.join(root, 'annotations/instances_val2017.json')
    digests = tmp_path / 'digests'
    config = tmp_path / 'dist_digits.py'
    config.write_text(f"_base_ = '{DIGITS}'\n"
                      "custom_imports = dict(imports=['mmxformer', 'rank_digest_hook'],\n"
                      "                      allow_failed_imports=False)\n"
                      f"custom_hooks = [dict(type='RankDigestHook', out_dir='{digests}')]\n")
    work_dir = tmp_path / 'work'
    result = subprocess.run([
        'bash',
        osp.join(ROOT, 'tools/dist_train.sh'),
        str(config), '2', '--work-dir',
        str(work_dir), '--cfg-options', 'env_cfg.dist_cfg.backend=gloo',
        f'train_dataloader.dataset.data_root={root}', f'val_dataloader.dataset.data_root={root}',
        f'test_dataloader.dataset.data_root={root}', f'val_evaluator.ann_file={ann}',
        f'test_evaluator.ann_file={ann}', 'train_cfg.max_epochs=1', 'train_cfg.val_interval=2',
        'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False', 'val_dataloader.num_workers=0',
        'val_dataloader.persistent_workers=False', 'default_hooks.checkpoint.interval=1',
        'default_hooks.logger.interval=1'
    ],
                            cwd=tmp_path,
                            env=tool_env(PORT=str(free_port()), PYTHONPATH=HERE),
                            capture_output=True,
                            text=True,
                            timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]

    # both ranks finished, each after 12 images / (2 ranks x 2 images) = 3 iterations, with the
    # same weights: DDP averaged the gradients
    ranks = [json.loads((digests / f'rank{rank}.json').read_text()) for rank in (0, 1)]
    for rank, record in enumerate(ranks):
        assert record['rank'] == rank and record['world_size'] == 2
        assert record['wrapper'] == 'MMDistributedDataParallel'
        assert record['iters'] == 3
    assert 'Epoch(train) [1][3/3]' in output
    assert ranks[0]['params_sha256'] == ranks[1]['params_sha256']
    # BN statistics are not synchronised (broadcast_buffers=False, no SyncBN): they differ,
    # which shows that the ranks trained on different images
    assert ranks[0]['state_sha256'] != ranks[1]['state_sha256']

    # rank 0 alone wrote the checkpoint (it holds rank 0's BN statistics) and the logs
    hook = load_digest_hook()
    checkpoint = load_checkpoint_safely(str(work_dir / 'epoch_1.pth'))
    assert hook.state_digest(checkpoint['state_dict']) == ranks[0]['state_sha256']
    [run_dir] = [path for path in work_dir.iterdir() if path.is_dir()]
    timestamp = run_dir.name
    files = {str(path.relative_to(work_dir)) for path in work_dir.rglob('*') if path.is_file()}
    assert files == {
        'dist_digits.py', 'epoch_1.pth', 'last_checkpoint', f'{timestamp}/{timestamp}.log',
        f'{timestamp}/vis_data/config.py', f'{timestamp}/vis_data/scalars.json',
        f'{timestamp}/vis_data/{timestamp}.json'
    }
    assert 'Epoch(train) [1][3/3]' in (run_dir / f'{timestamp}.log').read_text()


class ModuleHolder(nn.Module):
    """Stands in for DDP, which refuses SyncBatchNorm in a model on the CPU."""

    def __init__(self, module):
        super().__init__()
        self.module = module


@pytest.mark.parametrize('launcher,norms', [('pytorch', {nn.SyncBatchNorm}),
                                            ('none', {nn.BatchNorm2d})])
def test_sync_bn_key_converts_the_norms_of_distributed_runs(launcher, norms, tmp_path, monkeypatch):
    from mmengine.registry import MODEL_WRAPPERS
    from mmengine.runner import Runner
    MODEL_WRAPPERS.register_module(module=ModuleHolder, force=True)
    for name, value in dict(
            RANK='0',
            LOCAL_RANK='0',
            WORLD_SIZE='1',
            MASTER_ADDR='127.0.0.1',
            MASTER_PORT=str(free_port())).items():
        monkeypatch.setenv(name, value)
    cfg = load_config(
        DIGITS, {
            **XXS, 'env_cfg.dist_cfg.backend': 'gloo'
        },
        work_dir=str(tmp_path),
        launcher=launcher)
    setup_cpu_distributed(cfg)
    cfg.sync_bn, cfg.model_wrapper_cfg = 'torch', dict(type='ModuleHolder')
    try:
        model = Runner.from_cfg(cfg).model
        model = model.module if launcher == 'pytorch' else model
        assert {type(m) for m in model.modules() if isinstance(m, _BatchNorm)} == norms
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


@pytest.mark.parametrize('options,launcher,message', [
    ({}, 'pytorch', 'add --cfg-options env_cfg.dist_cfg.backend=gloo'),
    ({
        'env_cfg.dist_cfg.backend': 'gloo'
    }, 'slurm', 'need --launcher pytorch'),
    ({
        'env_cfg.dist_cfg.backend': 'gloo',
        'sync_bn': 'torch'
    }, 'pytorch', 'sync_bn.* needs GPUs'),
])
def test_cpu_distributed_setup_says_what_to_change(options, launcher, message):
    if torch.cuda.is_available():
        pytest.skip('the CPU set-up does nothing where CUDA is available')
    cfg = load_config(DIGITS, options, launcher=launcher)
    with pytest.raises(ValueError, match=message):
        setup_cpu_distributed(cfg)


def test_slurm_train_passes_the_job_to_srun(tmp_path):
    fake_srun = tmp_path / 'bin' / 'srun'
    fake_srun.parent.mkdir()
    fake_srun.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')
    fake_srun.chmod(0o755)
    env = tool_env(GPUS='16', SRUN_ARGS='--quotatype=auto --time=10')
    env['PATH'] = f'{fake_srun.parent}{os.pathsep}{env["PATH"]}'
    result = subprocess.run([
        'bash',
        osp.join(ROOT, 'tools/slurm_train.sh'), 'gpu', 'xf', 'cfg.py', 'work', '--amp',
        '--cfg-options', 'sync_bn=torch'
    ],
                            env=env,
                            capture_output=True,
                            text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split('\n')[:-1] == [
        '-p', 'gpu', '--job-name=xf', '--gres=gpu:8', '--ntasks=16', '--ntasks-per-node=8',
        '--cpus-per-task=5', '--kill-on-bad-exit=1', '--quotatype=auto', '--time=10', 'python',
        '-u',
        osp.join(ROOT, 'tools/train.py'), 'cfg.py', '--work-dir=work', '--launcher=slurm', '--amp',
        '--cfg-options', 'sync_bn=torch'
    ]
