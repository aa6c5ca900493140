"""Digit detection in the COCO layout, so that mmdet's COCO configs work with ``data_root`` alone.

::

    <out_dir>/annotations/instances_train2017.json
    <out_dir>/annotations/instances_val2017.json
    <out_dir>/train2017/000000000001.jpg ...
    <out_dir>/val2017/000000000001.jpg ...

Categories 1-10 are the digits '0'-'9'; a box ``[x, y, w, h]`` (ints) is tight around the digit's
ink. Validation images show held-out source digits only.
"""
import json

from .dataset_dir import build_once
from .scenes import (DIGIT_CLASSES, compose_scene, image_rng, load_digit_sources, save_rgb,
                     scene_set_args)

DET_SPLITS = (('train', 'train2017', False), ('val', 'val2017', True))  # name, folder, held out


def make_digits_det(out_dir='data/digits_det',
                    num_train=2000,
                    num_val=200,
                    image_size=160,
                    num_digits=(1, 4),
                    digit_size=(28, 64),
                    seed=0,
                    force=False):
    """Write the digit detection set (COCO layout) to ``out_dir``, unless it is already there.

    Args:
        out_dir (str | Path): Directory of the set. Defaults to ``'data/digits_det'``.
        num_train (int): Training images. Defaults to 2000.
        num_val (int): Validation images. Defaults to 200.
        image_size (int | tuple[int, int]): ``(height, width)`` of the images. Defaults to 160.
        num_digits (tuple[int, int]): Least and most digits per image. Defaults to (1, 4).
        digit_size (tuple[int, int]): Least and most height of a digit's 8x8 cell in pixels.
            Defaults to (28, 64).
        seed (int): Seed of the scenes. Defaults to 0.
        force (bool): Replace a different set already in ``out_dir``. Defaults to False.

    Returns:
        Path: ``out_dir``.
    """
    args = scene_set_args(num_train, num_val, image_size, num_digits, digit_size, seed)
    counts = dict(train=args['num_train'], val=args['num_val'])
    image_size, num_digits, digit_size, seed = (
        args[key] for key in ('image_size', 'num_digits', 'digit_size', 'seed'))

    def write(root):
        sources = load_digit_sources()
        (root / 'annotations').mkdir()
        written = {}
        for stream, (split, folder, held_out) in enumerate(DET_SPLITS):
            (root / folder).mkdir()
            coco = coco_skeleton(f'mmxformer digits detection, {split}')
            images, labels = sources.pool(held_out)
            for index in range(counts[split]):
                scene = compose_scene(
                    image_rng(seed, stream, index), images, labels, image_size, num_digits,
                    digit_size)
                image_id = index + 1
                file_name = f'{image_id:012d}.jpg'
                save_rgb(root / folder / file_name, scene.image)
                coco['images'].append(
                    dict(
                        id=image_id, file_name=file_name, width=image_size[1],
                        height=image_size[0]))
                for label, (x0, y0, x1, y1) in zip(scene.labels, scene.boxes.tolist()):
                    coco['annotations'].append(
                        dict(
                            id=len(coco['annotations']) + 1,
                            image_id=image_id,
                            category_id=int(label) + 1,
                            bbox=[x0, y0, x1 - x0, y1 - y0],
                            area=(x1 - x0) * (y1 - y0),
                            iscrowd=0))
            with open(root / 'annotations' / f'instances_{folder}.json', 'w') as f:
                json.dump(coco, f)
            written[split] = dict(images=len(coco['images']), boxes=len(coco['annotations']))
        return written

    return build_once(out_dir, 'digits_det', args, write, force)


def coco_skeleton(description):
    """A COCO instances dict with the ten digit categories and no images yet."""
    return dict(
        info=dict(description=description, version='1.0'),
        licenses=[],
        images=[],
        annotations=[],
        categories=[
            dict(id=i + 1, name=name, supercategory='digit') for i, name in enumerate(DIGIT_CLASSES)
        ])
