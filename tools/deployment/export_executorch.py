"""Export the model of an mmpretrain, mmdet or mmseg config to ExecuTorch (XNNPACK), checked by
ExecuTorch's runtime.

    python tools/deployment/export_executorch.py CONFIG [CHECKPOINT] --shape H W --out FILE.pte
                                             [--int8 [--calib-images N]] [--overwrite]
                                             [--cfg-options ...]

Exported, as by tools/deployment/export_onnx.py: a classifier's logits, a segmentor's logits at
the input size, a detector's raw head maps (no box decoding, no NMS); the input is the data
preprocessor's output, at the static shape --shape.

ExecuTorch's runtime runs the program on a random input and PyTorch the model; if an output
differs by more than --tolerance (fp32, max abs) nothing is written and the exit status is 1.
With --int8 the program is quantized (PT2E, XNNPACK quantizer) on the first --calib-images
images of the config's training set, checked against PyTorch running the same quantized graph,
and its agreement with the fp32 model is printed, measured on as many images of the test set.
An existing --out file is replaced only with --overwrite.
"""
from mmxformer.cli import (add_calibration_argument, check_before_export,
                           check_calibration_argument, exit_on_usage_error, export_failure_exits,
                           export_parser, load_run_config)
from mmxformer.deployment.export.executorch import export_executorch
from mmxformer.deployment.export.network import TOLERANCE


def parse_args(argv=None):
    parser = export_parser(__doc__, 'the .pte file to write')
    parser.add_argument(
        '--int8',
        action='store_true',
        help='int8 post-training quantization, calibrated on the training set')
    add_calibration_argument(parser, needs='--int8')
    parser.add_argument(
        '--tolerance',
        type=float,
        default=TOLERANCE,
        help=f'fp32: largest absolute difference allowed between ExecuTorch '
        f'and PyTorch (default {TOLERANCE:g})')
    args = parser.parse_args(argv)
    check_calibration_argument(parser, args)
    return args


def main(argv=None):
    args = parse_args(argv)
    cfg = load_run_config(args.config, args.cfg_options)
    check_before_export(cfg, args)
    with export_failure_exits(args.out):
        record = export_executorch(cfg, args.out, tuple(args.shape), args.checkpoint, args.int8,
                                   args.calib_images, args.tolerance)
    what = 'int8 program vs PyTorch running the quantized graph' if args.int8 else 'fp32'
    diffs = ', '.join(f'{diff:.2e}' for diff in record['max_abs_diff'])
    print(f'ExecuTorch vs PyTorch ({what}), input (1, 3, {args.shape[0]}, {args.shape[1]}): '
          f'max abs diff {diffs} (tolerance {record["tolerance"]:.2g})')
    partition = record['partition']
    print(f"XNNPACK delegates: {partition['delegates']}; ops outside them: "
          f"{partition['portable'] or 'none'}")
    if args.int8:
        agreement = ', '.join(f'{key} {value:.4g}' for key, value in record['agreement'].items())
        print(f'int8 vs fp32 model on test images: {agreement}')
    print(f'Wrote {args.out} ({record["bytes"] / 2**20:.2f} MiB)')


if __name__ == '__main__':
    exit_on_usage_error(main)
