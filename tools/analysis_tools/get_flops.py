"""Parameters and FLOPs of the model of a config, for one image; no dataset needed.

    python tools/analysis_tools/get_flops.py CONFIG [--shape H W] [--cfg-options KEY=VALUE ...]

FLOPs: one multiply-add counts as one FLOP (the fvcore / OpenMMLab get_flops convention).
"""
import argparse

from mmengine.config import DictAction

from mmxformer.analysis.complexity import complexity
from mmxformer.deployment.preflight import ResourceError, check_memory
from mmxformer.tasks import TensorModel, task_of
from mmxformer.utils.config import build_model, check_shape, load_config


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--shape',
        type=int,
        nargs='+',
        default=[320, 320],
        metavar='N',
        help='input size: H W, or one number for a square (default 320 320)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, help='override settings of the config')
    args = parser.parse_args(argv)
    if len(args.shape) not in (1, 2):
        parser.error('--shape takes H W, or one number for a square input')
    shape = tuple(args.shape) * (3 - len(args.shape))
    try:
        cfg = load_config(args.config, args.cfg_options)
        check_shape(cfg, shape)
    except (FileNotFoundError, SyntaxError, ValueError) as error:  # the config, or the shape
        parser.error(str(error))
    model = build_model(cfg)
    try:  # the count runs the model on an input of that shape
        check_memory(TensorModel(model, task_of(cfg), exported=False), (1, 3, *shape))
    except ResourceError as error:
        parser.error(str(error))
    params, flops = complexity(model, shape, task_of(cfg))
    print(f'Config: {args.config}')
    print(f'Input shape: {shape[0]}x{shape[1]} (HxW)')
    print(f'Params: {params / 1e6:.2f} M')
    print(f'FLOPs: {flops / 1e9:.2f} G (one multiply-add = one FLOP)')


if __name__ == '__main__':
    main()
