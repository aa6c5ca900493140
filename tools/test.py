"""Evaluate a checkpoint with an mmpretrain, mmdet or mmseg config (picked by its default_scope).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out RESULTS.pkl] [--show-dir DIR]
                                           [--cfg-options KEY=VALUE ...] [--launcher ...]
"""
import argparse
import os

from mmengine.config import DictAction

from mmxformer.utils.config import load_config
from mmxformer.utils.distributed import setup_cpu_distributed
from mmxformer.utils.run_options import enable_dump, enable_show


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save the evaluation metrics')
    parser.add_argument('--out', help='dump the raw predictions to this pickle file')
    parser.add_argument('--show-dir', help='draw predictions into this dir, relative to the '
                        "run's folder in the work dir")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main(argv=None):
    args = parse_args(argv)
    if not os.path.isfile(args.checkpoint):
        raise FileNotFoundError(f'Checkpoint {args.checkpoint} does not exist')
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    cfg.load_from = args.checkpoint
    if args.show_dir:
        enable_show(cfg, args.show_dir)
    if args.out:
        enable_dump(cfg, args.out)

    setup_cpu_distributed(cfg)
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    runner = (Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg))
    metrics = runner.test()
    print({key: round(value, 4) if isinstance(value, float) else value
           for key, value in metrics.items()})


if __name__ == '__main__':
    main()
