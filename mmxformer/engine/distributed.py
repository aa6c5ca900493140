"""Distributed runs: the rank a launcher gives a process, and runs on machines without GPUs."""
import datetime
import os

import torch

#: Where each launcher of mmengine (``--launcher``) gives a process its global rank.
RANK_VARIABLES = dict(pytorch='RANK', slurm='SLURM_PROCID', mpi='OMPI_COMM_WORLD_RANK')


def launch_rank(launcher: str) -> int:
    """The global rank that ``launcher`` gives this process, read before any process group
    exists (from torchrun's ``RANK``, slurm's ``SLURM_PROCID``, Open MPI's
    ``OMPI_COMM_WORLD_RANK``); 0 for ``'none'``, a run that is not distributed."""
    variable = RANK_VARIABLES.get(launcher)
    return int(os.environ.get(variable, 0)) if variable else 0


def setup_cpu_distributed(cfg):
    """Make a distributed run (``cfg.launcher`` set) work on a machine without GPUs.

    mmengine's launchers call ``torch.cuda.set_device``, which fails there, and its default DDP
    wrapper passes ``device_ids``, which PyTorch refuses for a model on the CPU. This starts the
    process group from torchrun's environment (mmengine then keeps it) and wraps the model in
    ``MMDistributedDataParallel`` without ``device_ids``. Nothing changes where CUDA is available
    or the run is not distributed. SyncBN (``sync_bn``, ``norm_cfg=dict(type='SyncBN')``) needs
    CUDA and cannot be used here.
    """
    if cfg.launcher == 'none' or torch.cuda.is_available():
        return
    if cfg.launcher != 'pytorch':
        raise ValueError(f'Without GPUs, distributed runs need --launcher pytorch (torchrun, '
                         f'tools/dist_train.sh), got --launcher {cfg.launcher}')
    dist_cfg = dict(cfg.get('env_cfg', {}).get('dist_cfg', {}))
    backend = dist_cfg.get('backend', 'nccl')
    if backend != 'gloo':
        raise ValueError(f"Without GPUs, distributed runs need the gloo backend, not {backend!r}: "
                         'add --cfg-options env_cfg.dist_cfg.backend=gloo')
    if cfg.get('sync_bn'):
        raise ValueError(f"sync_bn={cfg.sync_bn!r} needs GPUs: PyTorch's SyncBatchNorm runs on "
                         'CUDA only. Leave sync_bn out of a CPU run.')
    if not torch.distributed.is_initialized():
        timeout = dist_cfg.get('timeout')
        torch.distributed.init_process_group(
            backend='gloo', timeout=timeout and datetime.timedelta(seconds=timeout))
    wrapper = dict(
        cfg.get('model_wrapper_cfg') or dict(
            type='MMDistributedDataParallel',
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False)))
    cfg.model_wrapper_cfg = dict(wrapper, device_ids=None)
