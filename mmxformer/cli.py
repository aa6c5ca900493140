"""The command line of the tools: what the options of tools/train.py and tools/test.py change in
a config, the options that the export tools of tools/deployment/ share, and the checks that run
before anything is done (the paths written to, the inputs). Only the tools import this module:
it is the one place where a problem becomes an exit status and a message (:class:`UsageError`).
"""
import argparse
import errno
import os
import os.path as osp
import re
import sys
import tempfile
import zipfile
from contextlib import ExitStack, contextmanager
from typing import Callable, Iterator, Sequence

import torch
import torch.nn as nn
from mmengine.config import Config, DictAction

from .checkpoint.download import DownloadError, default_cache_dir
from .checkpoint.safe_load import NotACheckpointError, UnsafeCheckpointError, load_checkpoint_safely
from .checkpoint.state_dict import PretrainedKeysError, check_pretrained_keys, read_state_dict
from .data.checks import SPLITS, check_dataset_config
from .deployment import ExportCheckError
from .engine.distributed import RANK_VARIABLES, launch_rank
from .engine.fileio import register_atomic_local_backend
from .engine.hooks import RandomStateHook
from .engine.metrics import register_atomic_dump
from .tasks import task_of
from .utils.config import ConfigError, check_shape, load_config
from .utils.fileio import LockedError, exclusive_lock

RUN_CHECKPOINT = re.compile(r'(epoch|iter)_(\d+)\.pth$')  # what mmengine's CheckpointHook saves
#: The lock file of a work dir that a training owns (see :func:`lock_work_dir`).
WORK_DIR_LOCK = '.train.lock'
#: What a run killed while it wrote a file through ``AtomicLocalBackend`` left: the temporary
#: file (``tempfile.mkstemp``'s 8 random characters).
PARTIAL_FILE = re.compile(r'\.(.+)\.[a-z0-9_]{8}\.tmp$')
#: Errors of the disk that a path is on, which a tool reports in one line naming the file.
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG)


class UsageError(ValueError):
    """The command line asks for something the tool cannot do: a path it cannot write to, a
    result it would overwrite, a checkpoint that cannot serve. The tools print the message as an
    error and exit with status 1, without a traceback."""


class CfgOptionsAction(DictAction):
    """mmengine's ``DictAction`` for ``--cfg-options``, where an item that is not ``KEY=VALUE``
    is argparse's error (exit status 2) instead of a traceback."""

    def __call__(self, parser, namespace, values, option_string=None):
        for item in values or ():
            if '=' not in item:
                raise argparse.ArgumentError(
                    self, f"'{item}' is not KEY=VALUE (e.g. model.backbone.arch=xxsmall)")
        super().__call__(parser, namespace, values, option_string)


#: What starts the processes of a distributed run, for each ``--launcher``.
LAUNCHER_STARTERS = dict(
    pytorch='torchrun (tools/dist_train.sh, tools/dist_test.sh)',
    slurm='srun (tools/slurm_train.sh)',
    mpi='mpirun')


def check_launcher(launcher: str) -> None:
    """Raise unless this process was started by what ``--launcher`` names: mmengine would fail
    deep inside, reading the environment the launcher sets.

    Raises:
        UsageError: The launcher's rank variable is not set; names what starts such a run.
    """
    variable = RANK_VARIABLES.get(launcher)
    if variable and variable not in os.environ:
        raise UsageError(f'--launcher {launcher}: {variable} is not set, so this process was not '
                         f'started by {LAUNCHER_STARTERS[launcher]}; start it so, or leave '
                         '--launcher out to run one process')


def check_data(cfg: Config, splits: Sequence[str] = SPLITS) -> None:
    """Check the data sets of a run's ``splits`` before the runner is built, and print what was
    checked (:func:`mmxformer.data.checks.check_dataset_config`).

    Raises:
        UsageError: A file is missing, unreadable, holds wrong values, or would run code when
            read: the check's message, which names the file and the fix.
    """
    try:
        lines = check_dataset_config(cfg, splits=splits)
    except (FileNotFoundError, ValueError) as error:
        raise UsageError(str(error)) from None
    for line in lines:
        print(f'data check: {line}')


def load_run_config(path: str,
                    cfg_options: dict = None,
                    work_dir: str = None,
                    launcher: str = 'none') -> Config:
    """:func:`mmxformer.utils.config.load_config` of a config for mmengine's runner, where a
    config that cannot be read (missing, not valid Python, of an unknown ``default_scope``) or an
    option it does not have or the runner would not read is a :class:`UsageError`."""
    try:
        return load_config(path, cfg_options, work_dir, launcher, runner=True)
    except (FileNotFoundError, SyntaxError, ConfigError) as error:
        raise UsageError(str(error)) from None


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
        raise UsageError(f"--amp needs optim_wrapper.type 'OptimWrapper', got "
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
        raise UsageError(f'--auto-scale-lr needs auto_scale_lr.base_batch_size in {cfg.filename}'
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
    checkpoint = ''
    if osp.isfile(last):
        with open(last) as f:
            checkpoint = f.read().strip()
        if checkpoint and not osp.isfile(checkpoint):
            raise UsageError(f'--resume: {last} names {checkpoint}, which does not exist; '
                             'give the checkpoint to resume from: --resume CKPT')
    if checkpoint:
        return checkpoint
    # no last_checkpoint, or an empty one: mmengine writes it in place, after the checkpoint
    found = run_checkpoints(work_dir)
    if not found:
        return None
    whole = [name for name in found if zipfile.is_zipfile(osp.join(work_dir, name))]
    broken = sorted(set(found) - set(whole), key=found.index)
    lacking = 'an empty last_checkpoint' if osp.isfile(last) else 'no last_checkpoint'
    message = f'--resume: {work_dir} holds {_few(found)} but {lacking}; '
    if broken:
        message += (f'{_few(broken)} {"is" if len(broken) == 1 else "are"} not whole (a run '
                    'killed while it saved leaves such a file); ')
    if whole:
        message += f'name the one to resume from: --resume {osp.join(work_dir, whole[-1])}'
    else:
        message += 'there is no checkpoint to resume from'
    raise UsageError(message)


def check_training_state(checkpoint):
    """Raise unless ``checkpoint`` (a local file) holds what resuming needs: ``meta.epoch``,
    ``meta.iter`` and the optimizer's state, as the checkpoints that a run saves do. A published
    or converted checkpoint holds weights only.

    Raises:
        UsageError: The file is not a whole checkpoint, or holds weights only: names what is
            missing, and how to start from the weights instead.
    """
    try:
        state = load_checkpoint_safely(checkpoint)
    except NotACheckpointError as error:
        raise UsageError(f'--resume: {error}') from None
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


@contextmanager
def lock_work_dir(work_dir: str, launcher: str = 'none') -> Iterator[None]:
    """Own ``work_dir`` while the block runs: a second training into it ends at once, instead of
    passing the earlier-run check (:func:`check_fresh_work_dir`, to run inside the block) at the
    same time and overwriting the first one's checkpoints.

    The lock is ``flock`` on ``WORK_DIR_LOCK`` in the work dir (made if missing): the kernel
    releases the lock of a run that is killed. Its owner first removes what runs killed while
    they saved left there (``.epoch_3.pth.ab12cd34.tmp``, see :class:`AtomicLocalBackend`). In a
    distributed run the process of rank 0 locks for all ranks, which share the work dir. A work
    dir made here and still empty at the end (a check refused the run) is removed.

    Args:
        work_dir (str): The run's work dir.
        launcher (str): ``--launcher``, which tells where the rank is read from.

    Raises:
        UsageError: Another run owns the work dir: names it (pid and host) and what to do.
    """
    if launch_rank(launcher) != 0:
        yield
        return
    with ExitStack() as stack:
        if not osp.isdir(work_dir):
            os.makedirs(work_dir)
            stack.callback(lambda: os.listdir(work_dir) or os.rmdir(work_dir))
        try:
            stack.enter_context(exclusive_lock(osp.join(work_dir, WORK_DIR_LOCK)))
        except LockedError as error:
            raise UsageError(f'work_dir {work_dir} is in use by another training ({error.holder}),'
                             ' which writes its checkpoints there; wait until it ends, or pass '
                             '--work-dir DIR to train elsewhere') from None
        for name in sorted(os.listdir(work_dir)):
            if PARTIAL_FILE.match(name):
                os.remove(osp.join(work_dir, name))
                print(f'removed {osp.join(work_dir, name)}, left by a run killed while it saved')
        yield


def write_checkpoints_atomically(cfg: Config) -> None:
    """Have ``CheckpointHook`` write its checkpoints through :class:`AtomicLocalBackend`: a run
    killed while it saves, or a full disk, never leaves a truncated ``epoch_N.pth`` (which
    ``--resume`` would then take for a checkpoint). Nothing changes where the hook writes
    elsewhere than to local files (``out_dir`` an URL, ``backend_args`` or ``file_client_args``
    set), or where the config has no ``default_hooks.checkpoint``."""
    hook = (cfg.get('default_hooks') or {}).get('checkpoint')
    if not hook or hook.get('backend_args') or hook.get('file_client_args') or '://' in str(
            hook.get('out_dir', '')):
        return
    hook.backend_args = dict(backend=register_atomic_local_backend())


def check_start_checkpoint(model: nn.Module, cfg: Config) -> None:
    """Raise unless the checkpoint that a run starts from (``load_from``, resumed or not) fits
    the model it built: mmengine's runner loads it with ``strict=False``, so that weights of
    another model would be named in the log only, and training would go on without them.

    A resumed checkpoint must fit exactly (:func:`check_pretrained_keys`). One given as
    ``load_from`` may have heads whose weights have other shapes (fine-tuning a model for other
    classes): said in a line; those weights start from their initialisation, as mmengine does.
    Keys saved from a model in DistributedDataParallel (``module.``) count without the prefix,
    as the runner loads them.

    Args:
        model (nn.Module): The model the runner built (unwrapped from DDP), not loaded yet.
        cfg (Config): The run's config.

    Raises:
        UsageError: With the summary of :func:`check_pretrained_keys`: what is missing, of
            other shapes, or not in the model; or the checkpoint cannot be read, or is refused
            (it would run code, or its download cannot be verified).
    """
    checkpoint = cfg.get('load_from')
    if not checkpoint:
        return
    what = f'--resume {checkpoint}' if cfg.get('resume') else f'load_from={checkpoint}'
    try:
        state_dict = read_state_dict(checkpoint)
    except (NotACheckpointError, UnsafeCheckpointError, DownloadError, TypeError) as error:
        raise UsageError(f'nothing trained: {what}: {error}') from None
    state_dict = {re.sub(r'^module\.', '', key): value for key, value in state_dict.items()}
    model_state = model.state_dict()
    other_heads = [] if cfg.get('resume') else [
        key for key, value in state_dict.items()
        if key in model_state and key.split('.')[0].endswith('head')
        and tuple(getattr(value, 'shape', ())) != tuple(model_state[key].shape)
    ]
    fitted = dict(state_dict, **{key: model_state[key] for key in other_heads})
    try:
        check_pretrained_keys(model, fitted)
    except PretrainedKeysError as error:
        raise UsageError(f'nothing trained: {what}: {error}') from None
    if other_heads:
        print(f'{what}: {len(other_heads)} weights of the head have other shapes than in the '
              f'checkpoint ({_few(other_heads)}), as when fine-tuning for other classes; they '
              'start from their initialisation')


def check_writable_dir(path, what):
    """Raise unless ``path`` is a directory files can be created in, or one that can be made
    (its nearest existing parent is such a directory). Creates no directory.

    Args:
        path (str): The directory.
        what (str): What names it, to start the message with (``'--work-dir DIR'``).

    Raises:
        UsageError: ``path`` or a parent is a file, or the directory cannot be written to.
    """
    if not path:
        raise UsageError(f'{what.strip()}: the path is empty; give a directory')
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
        raise UsageError(f'--show-dir needs default_hooks.visualization in {cfg.filename}')
    task_of(cfg).enable_show(cfg, hook, show_dir)


def enable_dump(cfg, out):
    """Also write the raw predictions of the test set to ``out`` (a pickle), through
    :class:`AtomicDump`: never half-written, whatever happens while it is written."""
    if not out.endswith(('.pkl', '.pickle')):
        raise UsageError(f'--out must be a .pkl or .pickle file, got {out}')
    dump = dict(
        type=register_atomic_dump(), dump=dict(type=task_of(cfg).dump_metric, out_file_path=out))
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
        action=CfgOptionsAction,
        help='override settings of the config, e.g. model.backbone.arch=xxsmall')
    return parser


def parse_runner_args(parser, argv, data_checked):
    """Add the options that tools/train.py and tools/test.py share (``--launcher``,
    ``--skip-data-check`` and torch.distributed.launch's ``--local_rank``), parse ``argv`` and
    pass the local rank on as ``LOCAL_RANK``, as mmengine reads it.

    Args:
        parser (argparse.ArgumentParser): The tool's parser, with its own options.
        argv (list[str], optional): The arguments; None for ``sys.argv``.
        data_checked (str): What the data check covers, e.g. 'the test set'.
    """
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument(
        '--skip-data-check',
        action='store_true',
        help=f'do not check {data_checked} before building the runner')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


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


def exit_on_usage_error(main: Callable[[], None]) -> None:
    """Run a tool's ``main``; a :class:`UsageError` exits with status 1 and its message, and so
    do a checkpoint that the safe loader refuses and an ``OSError`` of the disk (full,
    read-only, not permitted: :data:`DISK_ERRORS`), naming its file."""
    try:
        main()
    except (UsageError, UnsafeCheckpointError, NotACheckpointError) as error:
        # a checkpoint refused by the safe loader: its message says what to do
        sys.exit(f'error: {error}')
    except OSError as error:
        if error.errno not in DISK_ERRORS:
            raise
        where = f'{error.filename}: ' if error.filename else ''
        sys.exit(f'error: {where}{error.strerror}')
