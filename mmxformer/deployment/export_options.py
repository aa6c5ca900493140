"""The command line that the export tools of tools/deployment/ share: the config, the weights,
the input shape, the file to write, and the checks that run before anything is exported."""
import argparse
import os.path as osp
import sys
from contextlib import contextmanager

from mmengine.config import DictAction

from ..apis.download import default_cache_dir
from ..utils.config import check_shape
from ..utils.run_options import UsageError, check_output_file, check_writable_dir
from .onnx_export import ExportCheckError


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
    parser.add_argument('checkpoint', nargs='?',
                        help="weights to export (default: the config's initialisation)")
    parser.add_argument('--shape', type=int, nargs=2, required=True, metavar=('H', 'W'),
                        help='input height and width')
    parser.add_argument('--out', required=True, help=out_help)
    parser.add_argument('--overwrite', action='store_true', help='replace an existing --out file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, e.g. model.backbone.arch=xxsmall')
    return parser


def add_calibration_argument(parser, needs=None):
    """``--calib-images N``: how many training images int8 is calibrated on (and how many test
    images its agreement with fp32 is measured on). ``needs``: the flag it goes with, if any."""
    prefix = f'with {needs}: ' if needs else ''
    parser.add_argument('--calib-images', type=int, default=32,
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
