"""Export the model of a config to an int8 ONNX file (QDQ), calibrated on its own test set.

    python tools/deployment/quantize_onnx.py CONFIG [CHECKPOINT] --shape H W --out FILE.onnx
                                         [--calib-images N] [--cfg-options ...]

The float32 graph is exported and checked by onnxruntime as tools/deployment/export_onnx.py
does (static shape), then onnxruntime's ``quantize_static`` quantizes it (int8 weights per
channel, uint8 activations, MinMax) on --calib-images images of the config's test set, each
through the model's data preprocessor and resized to --shape. The agreement of the int8 file
with the fp32 model on as many further images of the set is printed.
"""
import argparse
import sys

from mmengine.config import DictAction

from mmxformer.deployment.onnx_export import ExportCheckError
from mmxformer.deployment.quantization import export_onnx_int8
from mmxformer.utils.config import load_config


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', nargs='?',
                        help="weights to export (default: the config's initialisation)")
    parser.add_argument('--shape', type=int, nargs=2, required=True, metavar=('H', 'W'),
                        help='input height and width')
    parser.add_argument('--out', required=True, help='the int8 ONNX file to write')
    parser.add_argument('--calib-images', type=int, default=32,
                        help='calibration images (default 32)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, e.g. model.backbone.arch=xxsmall')
    args = parser.parse_args(argv)
    if args.calib_images < 1:
        parser.error('--calib-images must be at least 1')
    return args


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    try:
        record = export_onnx_int8(cfg, args.out, tuple(args.shape), args.checkpoint,
                                  args.calib_images)
    except (ExportCheckError, ValueError) as error:
        sys.exit(f'Export failed, {args.out} not written: {error}')
    agreement = ', '.join(f'{key} {value:.4g}' for key, value in record['agreement'].items())
    print(f'int8 vs fp32 model on held-out test images: {agreement}')
    print(f'Wrote {args.out} ({record["bytes"] / 2**20:.2f} MiB; fp32 '
          f'{record["fp32_bytes"] / 2**20:.2f} MiB)')


if __name__ == '__main__':
    main()
