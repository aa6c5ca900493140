"""Train a model from an mmpretrain, mmdet or mmseg config (picked by its default_scope).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--auto-scale-lr]
                                 [--cfg-options KEY=VALUE ...] [--launcher {none,pytorch,slurm,mpi}]
                                 [--skip-data-check] [--overwrite]

A work dir that holds checkpoints of an earlier run (epoch_N.pth, iter_N.pth) is refused unless
the run resumes (--resume) or --overwrite says to replace them.
"""
import argparse
import os
import sys

from mmengine.config import DictAction

from mmxformer.cli import (UsageError, add_random_state_hook, check_fresh_work_dir,
                           check_writable_dir, enable_amp, enable_auto_scale_lr, enable_resume)
from mmxformer.data.checks import check_dataset_config
from mmxformer.engine.distributed import setup_cpu_distributed
from mmxformer.utils.config import load_config, toolbox_of


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and checkpoints')
    parser.add_argument(
        '--resume',
        nargs='?',
        const='auto',
        metavar='CKPT',
        help='resume from CKPT, or without it from the latest checkpoint '
        'in the work dir')
    parser.add_argument(
        '--amp', action='store_true', help='mixed precision: fp16 on CUDA, bf16 on the CPU')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate with the total batch size')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, e.g. train_cfg.max_epochs=2')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument(
        '--skip-data-check',
        action='store_true',
        help='do not check the data sets before building the runner')
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='train into a work dir that holds checkpoints of an earlier run, '
        'replacing them')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    add_random_state_hook(cfg)  # checkpoints that resume exactly
    if args.amp:
        enable_amp(cfg)
    if args.auto_scale_lr:
        enable_auto_scale_lr(cfg)
    check_writable_dir(cfg.work_dir, f'work_dir {cfg.work_dir}')
    if args.resume and enable_resume(cfg, args.resume) is None:
        start = f'load_from={cfg.load_from}' if cfg.get('load_from') else 'scratch'
        print(f'--resume: no checkpoint found in the work dir {cfg.work_dir} (no '
              f'last_checkpoint file); nothing to resume, training starts from {start}')
    if not cfg.get('resume') and not args.overwrite:
        check_fresh_work_dir(cfg.work_dir)
    if not args.skip_data_check:
        for line in check_dataset_config(cfg):
            print(f'data check: {line}')

    setup_cpu_distributed(cfg)
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    runner = (Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg))
    print(f'Training a {toolbox_of(cfg)} model; logs and checkpoints go to {cfg.work_dir}')
    runner.train()


if __name__ == '__main__':
    try:
        main()
    except UsageError as error:
        sys.exit(f'error: {error}')
