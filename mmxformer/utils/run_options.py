"""What the command-line options of tools/train.py and tools/test.py change in a config."""
import os.path as osp

import torch

from ..engine.hooks import RandomStateHook
from .config import toolbox_of


def add_random_state_hook(cfg):
    """Add :class:`RandomStateHook` to a config's ``custom_hooks`` (once); tools/train.py does
    it for every run, so that every checkpoint can be resumed exactly."""
    hooks = list(cfg.get('custom_hooks', None) or [])
    if not any(hook.get('type') in ('RandomStateHook', RandomStateHook) for hook in hooks):
        hooks.append(dict(type='RandomStateHook'))
    cfg.custom_hooks = hooks


def amp_optim_wrapper(optim_wrapper):
    """The ``optim_wrapper`` config with mixed precision turned on for the available device:
    fp16 with a dynamic loss scale on CUDA (mmengine's ``AmpOptimWrapper``), bf16 on the CPU."""
    optim_wrapper = dict(optim_wrapper)
    if optim_wrapper.get('type', 'OptimWrapper') not in ('OptimWrapper', 'AmpOptimWrapper',
                                                         'CPUBF16OptimWrapper'):
        raise ValueError(f"--amp needs optim_wrapper.type 'OptimWrapper', got "
                         f"{optim_wrapper['type']!r}")
    if torch.cuda.is_available():
        optim_wrapper.update(type='AmpOptimWrapper', loss_scale='dynamic')
    else:
        optim_wrapper.update(type='CPUBF16OptimWrapper')
    return optim_wrapper


def enable_amp(cfg):
    """Mixed precision for the available device (``--amp``): see :func:`amp_optim_wrapper`."""
    cfg.optim_wrapper = amp_optim_wrapper(cfg.optim_wrapper)


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
