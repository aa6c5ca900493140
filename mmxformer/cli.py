"""The command line of the tools: what the options of tools/train.py and tools/test.py change in
a config, the options that the export tools of tools/deployment/ share, and the checks that run
before anything is done (the paths written to, the inputs). Only the tools import this module:
it is the one place where a problem becomes an exit status and a message (:class:`UsageError`).
"""
import argparse
import os
import os.path as osp
import re
import sys
import tempfile
from contextlib import contextmanager

import torch
from mmengine.config import DictAction

from .checkpoint.download import default_cache_dir
from .checkpoint.safe_load import load_checkpoint_safely
from .deployment import ExportCheckError
from .engine.hooks import RandomStateHook
from .tasks import task_of
from .utils.config import check_shape

RUN_CHECKPOINT = re.compile(r'(epoch|iter)_(\d+)\.pth$')  # what mmengine's CheckpointHook saves


class UsageError(ValueError):
    """The command line asks for something the tool cannot do: a path it cannot write to, a
    result it would overwrite, a checkpoint that cannot serve. The tools print the message as an
    error and exit with status 1, without a traceback."""


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
    """Resume a run (``--resume``): ``resume='auto'`` from the checkpoint that ``last_checkpoint``
    of the work dir names, a path from that file.

    Args:
        cfg (mmengine.Config): The run's config; ``resume`` and ``load_from`` are set.
        resume (str): 'auto' or a checkpoint.

    Returns:
        str | None: The checkpoint the run resumes from; None when ``'auto'`` finds no checkpoint
        in the work dir: then nothing is resumed and ``cfg`` is left as it was.

    Raises:
        UsageError: The checkpoint does not exist or holds no training state (see
            :func:`check_training_state`); or the work dir holds checkpoints but no
            ``last_checkpoint`` naming one.
    """
    if resume == 'auto':
        checkpoint = latest_checkpoint(cfg.work_dir)
        if checkpoint is None:
            return None
    else:
        checkpoint = resume
        if '://' not in checkpoint and not osp.isfile(checkpoint):
            raise UsageError(f'--resume {checkpoint}: no such file')
    if osp.isfile(checkpoint):
        check_training_state(checkpoint)
    cfg.resume = True
    cfg.load_from = checkpoint
    return checkpoint


def latest_checkpoint(work_dir):
    """The checkpoint that ``last_checkpoint`` of ``work_dir`` names (mmengine writes it after
    each save), or None if the work dir holds no checkpoint of a run.

    Raises:
        UsageError: ``last_checkpoint`` names a missing file, or there are checkpoints but no
            ``last_checkpoint``: which one to resume from is not known.
    """
    last = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(last):
        with open(last) as f:
            checkpoint = f.read().strip()
        if not osp.isfile(checkpoint):
            raise UsageError(f'--resume: {last} names {checkpoint}, which does not exist; '
                             'give the checkpoint to resume from: --resume CKPT')
        return checkpoint
    found = run_checkpoints(work_dir)
    if found:
        raise UsageError(f'--resume: {work_dir} holds {_few(found)} but no last_checkpoint; '
                         f'name the one to resume from: --resume {osp.join(work_dir, found[-1])}')
    return None


def check_training_state(checkpoint):
    """Raise unless ``checkpoint`` (a local file) holds what resuming needs: ``meta.epoch``,
    ``meta.iter`` and the optimizer's state, as the checkpoints that a run saves do. A published
    or converted checkpoint holds weights only.

    Raises:
        UsageError: Names what is missing, and how to start from the weights instead.
    """
    state = load_checkpoint_safely(checkpoint)
    meta = state.get('meta') if isinstance(state, dict) else None
    meta = meta if isinstance(meta, dict) else {}
    missing = [f'meta.{key}' for key in ('epoch', 'iter') if key not in meta]
    if not isinstance(state, dict) or 'optimizer' not in state:
        missing.append('optimizer')
    if missing:
        raise UsageError(
            f'--resume {checkpoint}: the checkpoint holds no training state (no '
            f'{", ".join(missing)}): it holds weights only, as published or converted ones do, '
            'and a run cannot resume from it. To start training from its weights, use '
            f'--cfg-options load_from={checkpoint} (the whole model), or the backbone\'s '
            f"init_cfg=dict(type='Pretrained', checkpoint=...)")


def run_checkpoints(work_dir):
    """The ``epoch_N.pth`` and ``iter_N.pth`` files in ``work_dir``, in the order of N."""
    if not osp.isdir(work_dir):
        return []
    numbered = []
    for name in os.listdir(work_dir):
        match = RUN_CHECKPOINT.match(name)
        if match:
            numbered.append((match[1], int(match[2]), name))
    return [name for *_, name in sorted(numbered)]


def check_fresh_work_dir(work_dir):
    """Raise if ``work_dir`` holds checkpoints of an earlier run, which a new run would overwrite.

    Raises:
        UsageError: Names them, and the options that continue, move or replace that run.
    """
    found = run_checkpoints(work_dir)
    if found:
        raise UsageError(f'{work_dir} holds checkpoints of an earlier run ({_few(found)}), which '
                         'this run would overwrite. Pass --resume to continue that run, '
                         '--work-dir DIR to start a new one elsewhere, or --overwrite to replace '
                         'them')


def check_writable_dir(path, what):
    """Raise unless ``path`` is a directory files can be created in, or one that can be made
    (its nearest existing parent is such a directory). Creates no directory.

    Args:
        path (str): The directory.
        what (str): What names it, to start the message with (``'--work-dir DIR'``).

    Raises:
        UsageError: ``path`` or a parent is a file, or the directory cannot be written to.
    """
    path = osp.abspath(osp.expanduser(path))
    existing = path
    while not osp.exists(existing):
        existing = osp.dirname(existing)
    if not osp.isdir(existing):
        raise UsageError(f'{what}: {existing} is a file, not a directory')
    try:  # os.access cannot tell (root passes it for /proc, where no file can be made)
        fd, probe = tempfile.mkstemp(dir=existing, prefix='.mmxformer-probe-')
    except OSError as error:
        raise UsageError(f'{what}: no file can be created in {existing} '
                         f'({error.strerror})') from None
    os.close(fd)
    os.remove(probe)


def check_output_file(path, what, overwrite=False):
    """Raise unless ``path`` is a file the tool can write: not a directory, not an existing file
    (unless ``overwrite``), in a directory that can be written to or made.

    Raises:
        UsageError: Says which, and for an existing file which option replaces it.
    """
    if osp.isdir(path):
        raise UsageError(f'{what} {path} is a directory; give the file to write')
    if osp.lexists(path) and not overwrite:
        raise UsageError(f'{what} {path} exists; pass --overwrite to replace it, or choose '
                         'another file')
    check_writable_dir(osp.dirname(osp.abspath(path)), f'{what} {path}')


def enable_show(cfg, show_dir):
    """Draw predictions of the test set into ``show_dir`` under the work dir (mmdet and
    mmpretrain: under the run's timestamped folder; mmseg: ``<show_dir>/vis_data/vis_image``)."""
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        raise ValueError(f'--show-dir needs default_hooks.visualization in {cfg.filename}')
    task_of(cfg).enable_show(cfg, hook, show_dir)


def enable_dump(cfg, out):
    """Also write the raw predictions of the test set to ``out`` (a pickle)."""
    if not out.endswith(('.pkl', '.pickle')):
        raise ValueError(f'--out must be a .pkl or .pickle file, got {out}')
    dump = dict(type=task_of(cfg).dump_metric, out_file_path=out)
    evaluators = cfg.test_evaluator
    cfg.test_evaluator = [*evaluators, dump] if isinstance(evaluators, list) else [evaluators, dump]


def _few(names, count=3):
    return ', '.join(
        names[:count]) + (f' and {len(names) - count} more' if len(names) > count else '')


def export_parser(doc, out_help, epilog=None):
    """An argument parser with the options of every export tool: ``config``, ``checkpoint``,
    ``--shape``, ``--out``, ``--overwrite`` and ``--cfg-options``.

    Args:
        doc (str): The tool's docstring; its first line is the description.
        out_help (str): What ``--out`` is, e.g. 'the .pte file to write'.
        epilog (str, optional): Text after the options.
    """
    parser = argparse.ArgumentParser(description=doc.split('\n')[0], epilog=epilog)
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        'checkpoint', nargs='?', help="weights to export (default: the config's initialisation)")
    parser.add_argument(
        '--shape',
        type=int,
        nargs=2,
        required=True,
        metavar=('H', 'W'),
        help='input height and width')
    parser.add_argument('--out', required=True, help=out_help)
    parser.add_argument('--overwrite', action='store_true', help='replace an existing --out file')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, e.g. model.backbone.arch=xxsmall')
    return parser


def add_calibration_argument(parser, needs=None):
    """``--calib-images N``: how many training images int8 is calibrated on (and how many test
    images its agreement with fp32 is measured on). ``needs``: the flag it goes with, if any."""
    prefix = f'with {needs}: ' if needs else ''
    parser.add_argument(
        '--calib-images',
        type=int,
        default=32,
        help=f'{prefix}calibration images, the first ones of the training set; '
        'the agreement with fp32 is measured on as many test images (default 32)')


def check_calibration_argument(parser, args):
    if args.calib_images < 1:
        parser.error('--calib-images must be at least 1')


def check_before_export(cfg, args, *shapes):
    """What would otherwise fail only after the export: the input shapes (``args.shape`` and
    ``shapes``), the output file, and the cache that a checkpoint which is not a local file is
    downloaded into.

    Raises:
        UsageError: Says what to change.
    """
    try:
        for shape in (args.shape, *shapes):
            check_shape(cfg, shape)
    except ValueError as error:
        raise UsageError(str(error)) from None
    check_output_file(args.out, '--out', args.overwrite)
    if args.checkpoint and not osp.isfile(args.checkpoint):
        check_writable_dir(default_cache_dir(), f'the checkpoint cache (MMXFORMER_HOME) of '
                           f'{args.checkpoint}')


@contextmanager
def export_failure_exits(out):
    """Turn a failed export (its check, or an input it cannot take) into the exit status 1 with
    one line that says that ``out`` was not written."""
    try:
        yield
    except (ExportCheckError, ValueError) as error:
        sys.exit(f'Export failed, {out} not written: {error}')


def exit_on_usage_error(main):
    """Run a tool's ``main``; a :class:`UsageError` exits with status 1 and its message."""
    try:
        main()
    except UsageError as error:
        sys.exit(f'error: {error}')
