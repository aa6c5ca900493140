"""What tools/train.py and tools/test.py share: the config a run uses, whatever its toolbox."""
import datetime
import os.path as osp

import torch
from mmengine.config import Config

from .amp import amp_optim_wrapper
from .registry import TOOLBOXES


def toolbox_of(cfg):
    """The toolbox a config belongs to, from its ``default_scope``."""
    scope = cfg.get('default_scope')
    if scope not in TOOLBOXES:
        raise ValueError(f"Config {cfg.filename} has default_scope={scope!r}; tools/train.py and "
                         f"tools/test.py run configs whose default_scope is one of {TOOLBOXES}")
    return scope


def config_file(path):
    """The file of a config given as a path or, as in ``_base_``, as ``package::name`` for a
    config shipped with an installed toolbox (``mmdet::yolo/yolov3_d53_8xb8-320-273e_coco.py``)."""
    if '::' not in path:
        if not osp.isfile(path):
            raise FileNotFoundError(f'Config file {path} does not exist')
        return path
    package, name = path.split('::', 1)
    from mmengine.utils import get_installed_path, is_installed
    if not is_installed(package):
        raise FileNotFoundError(f'Config {path}: package {package!r} is not installed')
    file = osp.join(get_installed_path(package), '.mim', 'configs', name)
    if not osp.isfile(file):
        raise FileNotFoundError(f'Config {path}: {package} ships no {name} (looked for {file})')
    return file


def load_config(path, cfg_options=None, work_dir=None, launcher='none'):
    """Load a config (a path, or ``package::name``: see :func:`config_file`), merge
    ``--cfg-options``, and set ``launcher`` and ``work_dir`` (the command line's, else the
    config's, else ``work_dirs/<config name>``)."""
    path = config_file(path)
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('work_dirs', osp.splitext(osp.basename(path))[0])
    toolbox_of(cfg)
    return cfg


def enable_amp(cfg):
    cfg.optim_wrapper = amp_optim_wrapper(cfg.optim_wrapper)


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
    wrapper = dict(cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False)))
    cfg.model_wrapper_cfg = dict(wrapper, device_ids=None)


def enable_auto_scale_lr(cfg):
    if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
        raise ValueError(f'--auto-scale-lr needs auto_scale_lr.base_batch_size in {cfg.filename}'
                         ' (the total batch size the learning rate was tuned for)')
    cfg.auto_scale_lr.enable = True


def enable_resume(cfg, resume):
    """``resume='auto'``: from the latest checkpoint of the work dir; a path: from that file."""
    cfg.resume = True
    cfg.load_from = None if resume == 'auto' else resume


def enable_show(cfg, show_dir):
    """Draw predictions of the test set into ``show_dir`` under the work dir (mmdet and
    mmpretrain: under the run's timestamped folder; mmseg: ``<show_dir>/vis_data/vis_image``)."""
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        raise ValueError(f'--show-dir needs default_hooks.visualization in {cfg.filename}')
    toolbox = toolbox_of(cfg)
    if toolbox == 'mmpretrain':
        hook.update(enable=True, out_dir=show_dir)
    elif toolbox == 'mmseg':  # mmseg's hook draws through the visualizer's own backends
        hook.update(draw=True)
        cfg.visualizer.save_dir = osp.join(cfg.work_dir, show_dir)
    else:
        hook.update(draw=True, test_out_dir=show_dir)


def enable_dump(cfg, out):
    """Also write the raw predictions of the test set to ``out`` (a pickle)."""
    if not out.endswith(('.pkl', '.pickle')):
        raise ValueError(f'--out must be a .pkl or .pickle file, got {out}')
    dump = dict(type='DumpResults', out_file_path=out)
    if toolbox_of(cfg) == 'mmdet':
        dump = dict(type='DumpDetResults', out_file_path=out)
    evaluators = cfg.test_evaluator
    cfg.test_evaluator = [*evaluators, dump] if isinstance(evaluators, list) else [evaluators, dump]
