"""Export the model of an mmpretrain, mmdet or mmseg config to ONNX, checked by onnxruntime.

    python tools/deployment/export_onnx.py CONFIG [CHECKPOINT] --shape H W --out FILE [--dynamic]
                                       [--check-shape H W] [--opset N] [--overwrite]
                                       [--cfg-options ...]

Exported: a classifier's logits, a segmentor's logits at the input size, a detector's raw head
outputs (YOLOv3: one prediction map per stride). Not exported: pre-processing (the input is
the data preprocessor's output; its settings are in the file's metadata) and a detector's box
decoding and NMS, which are left to the caller.

onnxruntime runs the exported graph on the same random input as PyTorch; if any output differs by
more than --tolerance (max abs, float32), or the graph needs custom ops, nothing is written and
the exit status is 1. With --dynamic, batch, height and width are dynamic axes and the check
runs at a second size too (batch 2, --check-shape). An existing --out file is replaced only with
--overwrite.
"""
import argparse
import os.path as osp
import sys

from mmengine.config import DictAction

from mmxformer.deployment.onnx_export import (DEFAULT_OPSET, TOLERANCE, ExportCheckError,
                                              export_onnx)
from mmxformer.apis.download import default_cache_dir
from mmxformer.utils.config import check_shape, load_config
from mmxformer.utils.run_options import UsageError, check_output_file, check_writable_dir


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        epilog='Detectors: box decoding and NMS are not in the graph; run them on the outputs.')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', nargs='?',
                        help="weights to export (default: the config's initialisation)")
    parser.add_argument('--shape', type=int, nargs=2, required=True, metavar=('H', 'W'),
                        help='input height and width')
    parser.add_argument('--out', required=True, help='the ONNX file to write')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing --out file')
    parser.add_argument('--dynamic', action='store_true',
                        help='dynamic batch, height and width; checked at a second size too')
    parser.add_argument('--check-shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='with --dynamic, the input size of the second check '
                        '(default: --shape plus 32 64)')
    parser.add_argument('--opset', type=int, default=DEFAULT_OPSET,
                        help=f'ONNX opset version (default {DEFAULT_OPSET})')
    parser.add_argument('--tolerance', type=float, default=TOLERANCE,
                        help=f'largest absolute difference allowed between onnxruntime and '
                        f'PyTorch (default {TOLERANCE:g})')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, e.g. model.backbone.arch=xxsmall')
    args = parser.parse_args(argv)
    if args.check_shape and not args.dynamic:
        parser.error('--check-shape needs --dynamic (a static graph runs at --shape only)')
    return args


def check_before_export(cfg, args):
    """What would otherwise fail only after the export: the shapes, the output file, and the
    cache that a checkpoint which is not a local file is downloaded into.

    Raises:
        UsageError: Says what to change.
    """
    try:
        check_shape(cfg, args.shape)
        if args.dynamic and args.check_shape:
            check_shape(cfg, args.check_shape)
    except ValueError as error:
        raise UsageError(str(error)) from None
    check_output_file(args.out, '--out', args.overwrite)
    if args.checkpoint and not osp.isfile(args.checkpoint):
        check_writable_dir(default_cache_dir(), f'the checkpoint cache (MMXFORMER_HOME) of '
                           f'{args.checkpoint}')


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    check_before_export(cfg, args)
    try:
        records = export_onnx(cfg, args.out, tuple(args.shape), args.checkpoint, args.dynamic,
                              args.opset, args.check_shape and tuple(args.check_shape),
                              args.tolerance)
    except ExportCheckError as error:
        sys.exit(f'Export check failed, {args.out} not written: {error}')
    for record in records:
        diffs = ', '.join(f'{name} {diff:.2e}' for name, diff in record['max_abs_diff'].items())
        print(f"onnxruntime vs PyTorch, input {record['input_shape']}: max abs diff {diffs}")
    print(f'Wrote {args.out}')


if __name__ == '__main__':
    try:
        main()
    except UsageError as error:
        sys.exit(f'error: {error}')
