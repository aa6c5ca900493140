"""Images per second of the segmentor of an mmseg config, as mmseg's analysis_tools/benchmark.py.

    python tools/benchmark_seg.py CONFIG [CHECKPOINT] [--repeat-times 1] [--num-images 200]
                                  [--num-warmup 5] [--shape H W] [--device cpu|cuda[:N]]
                                  [--threads N] [--cfg-options KEY=VALUE ...]

Batch 1, whole-image inference (``test_cfg.mode='whole'`` whatever the config's test mode) at the
size the config's test ``Resize`` gives an image of its aspect ratio (1024x2048 for Cityscapes), or
at ``--shape``. The input is a random image of that size, so no dataset is needed; the timed step
is ``model.test_step``: normalisation, forward, upsampling of the logits and argmax, not the
reading and decoding of image files. Without CHECKPOINT the weights are random, which does not
change the speed. Heavy on a CPU (about a second per 1024x2048 image per core and more): lower
--num-images there and wrap the run in ``flock /tmp/mmxformer-cpu.lock``.
"""
import argparse
import os
import platform
import statistics
import time

import torch
from mmengine.config import DictAction

from mmxformer.tasks import SegmentationTask, task_of
from mmxformer.utils.config import build_model, load_config


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='mmseg config file path')
    parser.add_argument('checkpoint', nargs='?', help='checkpoint file (default: random weights)')
    parser.add_argument(
        '--repeat-times',
        type=int,
        default=1,
        help='measure this many times; the mean and spread are printed')
    parser.add_argument(
        '--num-images',
        type=int,
        default=200,
        help='timed images per measurement (default 200, as mmseg)')
    parser.add_argument(
        '--num-warmup',
        type=int,
        default=5,
        help='untimed images before each measurement (default 5, as mmseg)')
    parser.add_argument(
        '--shape',
        type=int,
        nargs='+',
        metavar='N',
        help="input size: H W, or one number for a square (default: the config's "
        'test size)')
    parser.add_argument('--device', help='cpu or cuda[:N] (default: cuda if available, else cpu)')
    parser.add_argument('--threads', type=int, help="torch threads on the CPU (default: torch's)")
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, help='override settings of the config')
    args = parser.parse_args(argv)
    if args.shape is not None and len(args.shape) not in (1, 2):
        parser.error('--shape takes H W, or one number for a square input')
    if min(args.repeat_times, args.num_images) < 1 or args.num_warmup < 0:
        parser.error('--repeat-times and --num-images must be at least 1, --num-warmup at least 0')
    args.device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        parser.error('--device cuda, but CUDA is not available here')
    return args


def test_size(cfg):
    """(H, W) of a test image after the ``Resize`` of the config's test pipeline, for an image of
    the aspect ratio of its ``scale`` (W, H), e.g. 1024x2048 for ``scale=(2048, 1024)``."""
    pipeline = cfg.test_dataloader.dataset.get('pipeline', [])
    for transform in pipeline:
        if transform['type'] in ('Resize', 'mmseg.Resize') and transform.get('scale'):
            width, height = transform['scale']
            return height, width
    raise ValueError(f'The test pipeline of {cfg.filename} has no Resize with a scale to take '
                     'the test size from; pass --shape H W')


def device_name(device):
    if device.startswith('cuda'):
        return torch.cuda.get_device_name(device)
    name = platform.processor() or 'unknown CPU'
    try:
        with open('/proc/cpuinfo') as f:
            name = next(line.split(':', 1)[1].strip() for line in f if 'model name' in line)
    except (OSError, StopIteration):
        pass
    return f'{name}, {torch.get_num_threads()} threads on {os.cpu_count()} cores'


def random_batch(shape, device):
    """One random uint8 image of ``shape`` (H, W), packed as mmseg's data loader packs it."""
    from mmseg.structures import SegDataSample
    image = torch.randint(0, 256, (3, *shape), dtype=torch.uint8, device=device)
    sample = SegDataSample(
        metainfo=dict(img_shape=shape, ori_shape=shape, pad_shape=shape, scale_factor=(1., 1.)))
    return dict(inputs=[image], data_samples=[sample])


def images_per_second(model, data, num_images, num_warmup, device):

    def step():
        model.test_step(data)
        if device.startswith('cuda'):
            torch.cuda.synchronize(device)

    for _ in range(num_warmup):
        step()
    start = time.perf_counter()
    for _ in range(num_images):
        step()
    return num_images / (time.perf_counter() - start)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.cfg_options)
    task = task_of(cfg)
    if not isinstance(task, SegmentationTask):
        raise ValueError(f'{args.config} is an {task.toolbox} config; this benchmark times '
                         'mmseg segmentors')
    shape = tuple(args.shape) * (3 - len(args.shape)) if args.shape else test_size(cfg)
    cfg.model.test_cfg = dict(mode='whole')
    from mmengine.model import revert_sync_batchnorm
    model = revert_sync_batchnorm(build_model(cfg)).to(args.device)
    if args.checkpoint:
        from mmengine.runner import load_checkpoint
        load_checkpoint(model, args.checkpoint, map_location='cpu')
    data = random_batch(shape, args.device)

    print(f'{args.config}: whole-image inference, batch 1, {shape[0]}x{shape[1]} (HxW) random '
          f'input, {"trained" if args.checkpoint else "random"} weights')
    print(f'Device: {device_name(args.device)}; torch {torch.__version__}')
    fps = []
    with torch.no_grad():
        for run in range(args.repeat_times):
            fps.append(
                images_per_second(model, data, args.num_images, args.num_warmup, args.device))
            print(f'Run {run + 1}/{args.repeat_times}: {fps[-1]:.2f} img/s '
                  f'({1e3 / fps[-1]:.1f} ms per image, {args.num_images} images)')
    spread = f' ± {statistics.stdev(fps):.2f}' if len(fps) > 1 else ''
    print(f'Overall: {statistics.mean(fps):.2f}{spread} img/s')


if __name__ == '__main__':
    main()
