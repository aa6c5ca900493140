"""Train a model from an mmpretrain, mmdet or mmseg config (picked by its default_scope).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--auto-scale-lr]
                                 [--cfg-options KEY=VALUE ...] [--launcher {none,pytorch,slurm,mpi}]
                                 [--skip-data-check] [--overwrite]

A work dir that holds checkpoints of an earlier run (epoch_N.pth, iter_N.pth) is refused unless
the run resumes (--resume) or --overwrite says to replace them; one that another training is
writing to is refused. Checkpoints are never half-written: each is renamed into place when whole.
The checkpoint the run starts from (--resume, load_from) must fit the model.
"""
import argparse

from mmxformer.cli import (CfgOptionsAction, add_random_state_hook, check_data,
                           check_fresh_work_dir, check_launcher, check_start_checkpoint,
                           check_writable_dir, enable_amp, enable_auto_scale_lr, enable_resume,
                           exit_on_usage_error, load_run_config, lock_work_dir, parse_runner_args,
                           write_checkpoints_atomically)
from mmxformer.engine.distributed import setup_cpu_distributed
from mmxformer.utils.config import toolbox_of


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
        action=CfgOptionsAction,
        help='override settings of the config, e.g. train_cfg.max_epochs=2')
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='train into a work dir that holds checkpoints of an earlier run, '
        'replacing them')
    return parse_runner_args(parser, argv, 'the data sets')


def main(argv=None):
    args = parse_args(argv)
    check_launcher(args.launcher)
    cfg = load_run_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    add_random_state_hook(cfg)  # checkpoints that resume exactly
    write_checkpoints_atomically(cfg)
    if args.amp:
        enable_amp(cfg)
    if args.auto_scale_lr:
        enable_auto_scale_lr(cfg)
    check_writable_dir(cfg.work_dir, f'work_dir {cfg.work_dir}')
    # the work dir's checks hold only while no other run can write there
    with lock_work_dir(cfg.work_dir, args.launcher):
        if args.resume and enable_resume(cfg, args.resume) is None:
            start = f'load_from={cfg.load_from}' if cfg.get('load_from') else 'scratch'
            print(f'--resume: no checkpoint found in the work dir {cfg.work_dir} (no '
                  f'last_checkpoint file); nothing to resume, training starts from {start}')
        if not cfg.get('resume') and not args.overwrite:
            check_fresh_work_dir(cfg.work_dir)
        if not args.skip_data_check:
            check_data(cfg)

        setup_cpu_distributed(cfg)
        from mmengine.model import is_model_wrapper
        from mmengine.registry import RUNNERS
        from mmengine.runner import Runner
        runner = (Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg))
        check_start_checkpoint(
            runner.model.module if is_model_wrapper(runner.model) else runner.model, cfg)
        print(f'Training a {toolbox_of(cfg)} model; logs and checkpoints go to {cfg.work_dir}')
        runner.train()


if __name__ == '__main__':
    exit_on_usage_error(main)
