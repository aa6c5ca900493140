"""Digit segmentation in the Cityscapes layout (mmseg's ``_leftImg8bit.png`` and
``_gtFine_labelTrainIds.png`` suffixes)::

    <out_dir>/leftImg8bit/{train,val}/digits/digits_000000_000000_leftImg8bit.png ...
    <out_dir>/gtFine/{train,val}/digits/digits_000000_000000_gtFine_labelTrainIds.png ...

A label map is uint8, one channel: 0 background, 1-10 the digits '0'-'9' (their ink), 255
(ignored) on the anti-aliased rim of each digit. Validation images show held-out source digits
only. mmseg's ``CityscapesDataset`` refuses other class names, so a config reads the set with
``type='DigitsSegDataset'`` (:mod:`mmxformer.data.digits.seg_dataset`, imported through the
config's ``custom_imports``).
"""
import cv2
import numpy as np

from .dataset_dir import build_once
from .scenes import (DIGIT_CLASSES, INK_THRESHOLD, compose_scene, image_rng, load_digit_sources,
                     save_rgb, scene_set_args)

SEG_CLASSES = ('background', ) + DIGIT_CLASSES
SEG_PALETTE = [[0, 0, 0], [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40],
               [148, 103, 189], [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34],
               [23, 190, 207]]
IGNORE_INDEX = 255
RIM_THRESHOLD = 0.25  # coverage from which a pixel that is not ink is ignored
CITY = 'digits'
IMG_SUFFIX = '_leftImg8bit.png'
SEG_MAP_SUFFIX = '_gtFine_labelTrainIds.png'


def make_digits_seg(out_dir='data/digits_seg',
                    num_train=1000,
                    num_val=100,
                    image_size=(128, 256),
                    num_digits=(1, 5),
                    digit_size=(28, 64),
                    seed=0,
                    ignore_rims=True,
                    force=False):
    """Write the digit segmentation set (Cityscapes layout) to ``out_dir``, unless it is there.

    Args:
        out_dir (str | Path): Directory of the set. Defaults to ``'data/digits_seg'``.
        num_train (int): Training images. Defaults to 1000.
        num_val (int): Validation images. Defaults to 100.
        image_size (int | tuple[int, int]): ``(height, width)``. Defaults to (128, 256).
        num_digits (tuple[int, int]): Least and most digits per image. Defaults to (1, 5).
        digit_size (tuple[int, int]): Least and most height of a digit's 8x8 cell in pixels.
            Defaults to (28, 64).
        seed (int): Seed of the scenes. Defaults to 0.
        ignore_rims (bool): Label the anti-aliased rim of the digits 255. Defaults to True.
        force (bool): Replace a different set already in ``out_dir``. Defaults to False.

    Returns:
        Path: ``out_dir``.
    """
    args = dict(
        scene_set_args(num_train, num_val, image_size, num_digits, digit_size, seed),
        ignore_rims=bool(ignore_rims))
    counts = dict(train=args['num_train'], val=args['num_val'])
    image_size, num_digits, digit_size, seed = (
        args[key] for key in ('image_size', 'num_digits', 'digit_size', 'seed'))

    def write(root):
        sources = load_digit_sources()
        for stream, split in enumerate(('train', 'val')):
            image_dir = root / 'leftImg8bit' / split / CITY
            label_dir = root / 'gtFine' / split / CITY
            image_dir.mkdir(parents=True)
            label_dir.mkdir(parents=True)
            images, labels = sources.pool(held_out=split == 'val')
            for index in range(counts[split]):
                scene = compose_scene(
                    image_rng(seed, stream, index), images, labels, image_size, num_digits,
                    digit_size)
                name = f'{CITY}_{index:06d}_000000'
                save_rgb(image_dir / f'{name}{IMG_SUFFIX}', scene.image)
                if not cv2.imwrite(
                        str(label_dir / f'{name}{SEG_MAP_SUFFIX}'), label_map(scene, ignore_rims)):
                    raise OSError(f'could not write {label_dir / name}{SEG_MAP_SUFFIX}')
        return counts

    return build_once(out_dir, 'digits_seg', args, write, force)


def label_map(scene, ignore_rims=True):
    """The (H, W) uint8 train ids of a scene: 0 background, 1 + digit on ink, 255 on rims."""
    labels = np.zeros(scene.coverage.shape, np.uint8)
    ink = scene.coverage >= INK_THRESHOLD
    labels[ink] = scene.labels[scene.instance_map[ink]] + 1
    if ignore_rims:
        labels[~ink & (scene.coverage >= RIM_THRESHOLD)] = IGNORE_INDEX
    return labels
