"""Evaluate a checkpoint with an mmpretrain, mmdet or mmseg config (picked by its default_scope).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out RESULTS.pkl] [--overwrite]
                                           [--show-dir DIR] [--cfg-options KEY=VALUE ...]
                                           [--launcher ...] [--skip-data-check]

Before anything is evaluated, the test set is checked (unless --skip-data-check) and the
checkpoint must hold every weight of the model, with its shape. The --out file is never
half-written: it is renamed into place when whole.
"""
import argparse
import os

from mmxformer.checkpoint.safe_load import NotACheckpointError
from mmxformer.checkpoint.state_dict import PretrainedKeysError, check_pretrained_keys
from mmxformer.cli import (CfgOptionsAction, UsageError, check_data, check_launcher,
                           check_output_file, check_writable_dir, enable_dump, enable_show,
                           exit_on_usage_error, load_run_config, parse_runner_args)
from mmxformer.engine.distributed import setup_cpu_distributed


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save the evaluation metrics')
    parser.add_argument('--out', help='dump the raw predictions to this pickle file')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing --out file')
    parser.add_argument(
        '--show-dir',
        help='draw predictions into this dir, relative to the '
        "run's folder in the work dir")
    parser.add_argument(
        '--cfg-options', nargs='+', action=CfgOptionsAction, help='override settings of the config')
    return parse_runner_args(parser, argv, 'the test set')


def main(argv=None):
    args = parse_args(argv)
    if not os.path.isfile(args.checkpoint):
        raise UsageError(f'checkpoint {args.checkpoint}: no such file')
    check_launcher(args.launcher)
    cfg = load_run_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    cfg.load_from = args.checkpoint
    check_writable_dir(cfg.work_dir, f'work_dir {cfg.work_dir}')
    if args.show_dir:
        enable_show(cfg, args.show_dir)
    if args.out:
        check_output_file(args.out, '--out', args.overwrite)
        enable_dump(cfg, args.out)
    if not args.skip_data_check:
        check_data(cfg, splits=('test', ))

    setup_cpu_distributed(cfg)
    from mmengine.model import is_model_wrapper
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    runner = (Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg))
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    try:  # the runner loads with strict=False: weights that do not fit would only be logged
        check_pretrained_keys(model, args.checkpoint)
    except (PretrainedKeysError, NotACheckpointError) as error:
        raise UsageError(f'nothing evaluated: {error}') from None
    metrics = runner.test()
    print({
        key: round(value, 4) if isinstance(value, float) else value
        for key, value in metrics.items()
    })


if __name__ == '__main__':
    exit_on_usage_error(main)
