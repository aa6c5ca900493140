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
from mmxformer.cli import (check_before_export, exit_on_usage_error, export_failure_exits,
                           export_parser, load_run_config)
from mmxformer.deployment.export.onnx import DEFAULT_OPSET, TOLERANCE, export_onnx


def parse_args(argv=None):
    parser = export_parser(
        __doc__,
        'the ONNX file to write',
        epilog='Detectors: box decoding and NMS are not in the graph; run them on the outputs.')
    parser.add_argument(
        '--dynamic',
        action='store_true',
        help='dynamic batch, height and width; checked at a second size too')
    parser.add_argument(
        '--check-shape',
        type=int,
        nargs=2,
        metavar=('H', 'W'),
        help='with --dynamic, the input size of the second check '
        '(default: --shape plus 32 64)')
    parser.add_argument(
        '--opset',
        type=int,
        default=DEFAULT_OPSET,
        help=f'ONNX opset version (default {DEFAULT_OPSET})')
    parser.add_argument(
        '--tolerance',
        type=float,
        default=TOLERANCE,
        help=f'largest absolute difference allowed between onnxruntime and '
        f'PyTorch (default {TOLERANCE:g})')
    args = parser.parse_args(argv)
    if args.check_shape and not args.dynamic:
        parser.error('--check-shape needs --dynamic (a static graph runs at --shape only)')
    return args


def main(argv=None):
    args = parse_args(argv)
    cfg = load_run_config(args.config, args.cfg_options)
    check_before_export(cfg, args, *([args.check_shape] if args.check_shape else []))
    with export_failure_exits(args.out):
        records = export_onnx(cfg, args.out, tuple(args.shape), args.checkpoint, args.dynamic,
                              args.opset, args.check_shape and tuple(args.check_shape),
                              args.tolerance)
    for record in records:
        diffs = ', '.join(f'{name} {diff:.2e}' for name, diff in record['max_abs_diff'].items())
        print(f"onnxruntime vs PyTorch, input {record['input_shape']}: max abs diff {diffs}")
    print(f'Wrote {args.out}')


if __name__ == '__main__':
    exit_on_usage_error(main)
