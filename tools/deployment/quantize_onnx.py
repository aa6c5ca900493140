"""Export the model of a config to an int8 ONNX file (QDQ), calibrated on its own training set.

    python tools/deployment/quantize_onnx.py CONFIG [CHECKPOINT] --shape H W --out FILE.onnx
                                         [--calib-images N] [--overwrite] [--cfg-options ...]

The float32 graph is exported and checked by onnxruntime as tools/deployment/export_onnx.py does
(static shape), onnxruntime's basic optimizer folds its constants, then onnxruntime's
``quantize_static`` quantizes it (int8 weights per channel, uint8 activations, MinMax) on the first
--calib-images images of the config's training set, read through its test pipeline and the model's
data preprocessor and resized to --shape. The agreement of the int8 file with the fp32 model on as
many test images is printed. An existing --out file is replaced only with --overwrite.
"""
from mmxformer.cli import (add_calibration_argument, check_before_export,
                           check_calibration_argument, exit_on_usage_error, export_failure_exits,
                           export_parser, load_run_config)
from mmxformer.deployment.export.onnx_int8 import export_onnx_int8


def parse_args(argv=None):
    parser = export_parser(__doc__, 'the int8 ONNX file to write')
    add_calibration_argument(parser)
    args = parser.parse_args(argv)
    check_calibration_argument(parser, args)
    return args


def main(argv=None):
    args = parse_args(argv)
    cfg = load_run_config(args.config, args.cfg_options)
    check_before_export(cfg, args)
    with export_failure_exits(args.out):
        record = export_onnx_int8(cfg, args.out, tuple(args.shape), args.checkpoint,
                                  args.calib_images)
    agreement = ', '.join(f'{key} {value:.4g}' for key, value in record['agreement'].items())
    print(f'int8 vs fp32 model on test images: {agreement}')
    print(f'Wrote {args.out} ({record["bytes"] / 2**20:.2f} MiB; fp32 '
          f'{record["fp32_bytes"] / 2**20:.2f} MiB)')


if __name__ == '__main__':
    exit_on_usage_error(main)
