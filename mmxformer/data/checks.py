"""Preflight checks of a config's datasets: a clear error naming the path before a run starts,
rather than an empty dataset or an obscure one in a data loader worker.

Each dataset is built by its toolbox's own ``DATASETS`` registry, with an empty pipeline, as
mmpretrain's ``tools/misc/verify_dataset.py`` does, and its files are read from
``get_data_info(i)``: every dataset class, ``split``, ``ann_file``, label map,
``reduce_zero_label`` and ``filter_cfg`` is honoured as in training.

mmcv's ``LoadImageFromFile`` names an image it cannot decode with OpenCV (its default), but not an
empty file nor one that fails with ``imdecode_backend='pillow'``, and mmseg's ``LoadAnnotations``
never names the label map. So the check decodes the images and label maps itself (all of them up
to ``max_scan`` per dataset, an even sample beyond). mmdet's ``CocoDataset`` silently drops
annotations of unknown images or categories, so the COCO file itself is read too.
"""
import json
import os.path as osp
import re
from importlib import import_module

import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.registry import DefaultScope
from PIL import Image

from ..registry import TOOLBOXES

MAX_SCAN = 5000
SPLITS = ('train', 'val', 'test')
SHOWN = 5  # offending files an error names
COCO_KEYS = ('images', 'annotations', 'categories')
# Real annotation files round box corners to a fraction of a pixel beyond the border (COCO has
# such boxes); a box further out than this points at the wrong image or the wrong units.
BOX_TOLERANCE = 1.0
# What a build or a load of the toolboxes' datasets raises for a wrong config or annotation file
# (their own checks are asserts; a missing file, an OSError, passes unchanged).
DATASET_ERRORS = (AssertionError, KeyError, IndexError, RuntimeError, TypeError, ValueError)


def check_dataset_config(cfg, max_scan=MAX_SCAN, splits=SPLITS):
    """Check the datasets of a config's data loaders of ``splits``.

    Wrappers (``RepeatDataset``, ``ConcatDataset``, ``ClassBalancedDataset``, ...) are looked
    through. Every dataset derived from mmengine's ``BaseDataset`` is built (without its pipeline)
    and checked: the annotation file and data directories exist, it has samples, every file of
    its samples exists, and the images and label maps of up to ``max_scan`` samples decode;
    label maps of mmseg sets hold class indices or the ignore index after the set's
    ``reduce_zero_label`` and label map; classification labels lie within the classes; COCO
    files are consistent (ids, categories, boxes within their image). Of any other dataset,
    only ``data_root`` is checked.

    Args:
        cfg (mmengine.Config | dict): A config of mmpretrain, mmdet or mmseg.
        max_scan (int): Most samples whose files are decoded per dataset; a larger set is checked
            on an even sample of this size (every file must exist all the same). Defaults to
            5000.
        splits (Sequence[str]): Which of the data loaders ``'train'``, ``'val'`` and ``'test'``
            to check. Defaults to all three.

    Returns:
        list[str]: One line per distinct dataset checked, e.g.
        ``'train: CocoDataset data/coco: 118287 images, 5000 checked'``.

    Raises:
        FileNotFoundError: a directory, annotation file, image or label map is missing.
        ValueError: a dataset cannot be built, has no samples, or an annotation file, image or
            label map is unreadable or holds wrong values.
    """
    unknown = [split for split in splits if split not in SPLITS]
    if unknown:
        raise ValueError(f'unknown splits {unknown}; choose among {list(SPLITS)}')
    if max_scan < 1:
        raise ValueError(f'max_scan={max_scan}: at least one sample per dataset must be checked')
    scope = cfg.get('default_scope')
    checked, lines = [], []
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader or not loader.get('dataset'):
            continue
        for dataset in leaf_datasets(loader['dataset']):
            dataset = {key: value for key, value in dataset.items() if key != 'pipeline'}
            if dataset not in checked:
                checked.append(dataset)
                lines.append(f'{split}: {check_dataset(dataset, scope, max_scan)}')
    return lines


def leaf_datasets(dataset):
    """The datasets inside wrappers such as ``RepeatDataset`` and ``ConcatDataset``."""
    if isinstance(dataset.get('datasets'), (list, tuple)):
        for inner in dataset['datasets']:
            yield from leaf_datasets(inner)
    elif isinstance(dataset.get('dataset'), dict):
        yield from leaf_datasets(dataset['dataset'])
    else:
        yield dataset


def check_dataset(dataset_cfg, scope=None, max_scan=MAX_SCAN):
    """Check one dataset config dict; see :func:`check_dataset_config`.

    Returns:
        str: what was checked, e.g. ``'CocoDataset data/digits_det: 3 images (all checked)'``.
    """
    scope, cls = dataset_class(dataset_cfg.get('type'), scope)
    name = cls.__name__
    root = dataset_cfg.get('data_root') or ''
    if '://' in str(root):
        return f'{name} {root}: remote, not checked'
    if root and not osp.isdir(root):
        raise FileNotFoundError(f'data_root {root} of the {name} does not exist{_hint(root)}')
    if not issubclass(cls, BaseDataset):
        return f'{name} {root}: not an mmengine BaseDataset, only data_root checked'
    dataset = _build(dataset_cfg, scope, cls, root)
    _require_paths(dataset, name)
    coco = _read_coco(dataset) if _is_a(dataset, 'mmdet.datasets', 'CocoDataset') else None
    try:
        dataset.full_init()
    except DATASET_ERRORS as e:
        raise ValueError(f'the {name} of {root or "."} cannot load its samples: {e}') from e
    if len(dataset) == 0:
        raise _empty_set_error(dataset, name, coco)
    sample = _check_samples(dataset, max_scan)
    for info in sample:
        for path in _images(info):
            _decode(path).close()
    is_seg = _is_a(dataset, 'mmseg.datasets', 'BaseSegDataset')
    if is_seg:
        _check_label_values(sample, dataset)
    else:
        for info in sample:
            if info.get('seg_map_path'):
                _decode(info['seg_map_path']).close()
    labelled = ' with label maps' if is_seg and sample[0].get('seg_map_path') else ''
    checked = ' (all checked)' if len(sample) == len(dataset) else f', {len(sample)} checked'
    return f'{name} {root}: {len(dataset)} images{labelled}{checked}'


def dataset_class(dataset_type, scope=None):
    """The toolbox and class of ``dataset_type`` (a class, ``'Name'`` or ``'scope.Name'``),
    looked up in the toolbox's ``DATASETS`` registry: the type's scope, else ``scope``, else the
    first installed toolbox that knows the name.

    Raises:
        ValueError: no registry knows the type.
    """
    if isinstance(dataset_type, type):
        return scope, dataset_type
    type_scope = str(dataset_type).rpartition('.')[0]
    toolboxes = [type_scope or scope] if type_scope or scope else TOOLBOXES
    for toolbox in toolboxes:
        try:
            registry = import_module(f'{toolbox}.registry').DATASETS
        except ImportError as e:
            if len(toolboxes) == 1:
                raise ValueError(f'dataset type {dataset_type!r} is one of {toolbox}, which '
                                 'cannot be imported here; install it') from e
            continue
        with DefaultScope.overwrite_default_scope(toolbox):
            cls = registry.get(dataset_type)
        if cls is not None:
            return toolbox, cls
    raise ValueError(f'dataset type {dataset_type!r} is not in the DATASETS registry of '
                     f'{type_scope or scope or TOOLBOXES}; check the type and default_scope')


def _build(dataset_cfg, scope, cls, root):
    """The dataset of ``dataset_cfg``, built by its toolbox with no pipeline and not loaded."""
    registry = import_module(f'{scope}.registry').DATASETS
    # serialize_data=False: mmengine cannot serialize an empty set, which deserves a better error
    check_cfg = dict(dataset_cfg, pipeline=[], lazy_init=True, serialize_data=False)
    try:
        with DefaultScope.overwrite_default_scope(scope):
            return registry.build(check_cfg)
    except DATASET_ERRORS as e:
        advice = ''
        if _is_subclass(cls, 'mmseg.datasets', 'BaseSegDataset') and cls.METAINFO.get('classes'):
            advice = (f"; a set with other classes than the {cls.__name__}'s takes "
                      "type='BaseSegDataset' with img_suffix and seg_map_suffix")
        raise ValueError(f'cannot build the {cls.__name__} of {root or "."}: {e}{advice}') from e


def _toolbox_class(module, name):
    try:
        return getattr(import_module(module), name)
    except ImportError:
        return None


def _is_subclass(cls, module, name):
    base = _toolbox_class(module, name)
    return base is not None and issubclass(cls, base)


def _is_a(dataset, module, name):
    return _is_subclass(type(dataset), module, name)


def _hint(path):
    """How to make the set at ``path`` if it is one of the digit sets."""
    match = re.search(r'^(.*?digits_(det|seg|cls))(?:[/\\]|$)', str(path))
    if match:
        return (f'; make it with `python tools/misc/make_digits.py {match[2]} --out {match[1]}` '
                '(or `python tools/misc/make_digits.py all`)')
    return '; check data_root, data_prefix and ann_file in the config'


def _listing(items):
    more = f' and {len(items) - SHOWN} more' if len(items) > SHOWN else ''
    return ', '.join(str(item) for item in items[:SHOWN]) + more


def _sample(items, max_scan):
    """All of ``items`` up to ``max_scan``, else ``max_scan`` of them evenly spread."""
    if len(items) <= max_scan:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, max_scan).astype(int)]


def _require_paths(dataset, name):
    """The annotation file and the data directories the built dataset will read must exist."""
    if dataset.ann_file and '://' not in dataset.ann_file and not osp.exists(dataset.ann_file):
        raise FileNotFoundError(f'annotation file {dataset.ann_file} of the {name} does not exist'
                                f'{_hint(dataset.ann_file)}')
    for key, path in dataset.data_prefix.items():
        if isinstance(path, str) and path and '://' not in path and not osp.isdir(path):
            what = dict(
                img='image directory',
                img_path='image directory',
                seg='label directory',
                seg_map_path='label directory').get(key)
            raise FileNotFoundError(f'{what or f"data_prefix {key}"} {path} of the {name} does '
                                    f'not exist{_hint(path)}')


def _images(info):
    """The images of a sample: its paths but the label map (``img_path``, ``img_path2``...)."""
    return [
        path for key, path in info.items()
        if key.endswith('_path') and key != 'seg_map_path' and isinstance(path, str)
    ]


def _check_samples(dataset, max_scan):
    """Every file of every sample must exist, every classification label be one of the classes.

    Returns:
        list[dict]: the infos of up to ``max_scan`` samples, evenly spread, to decode.
    """
    classes = dataset.metainfo.get('classes')
    wanted = set(_sample(range(len(dataset)), max_scan))
    missing, unlabelled, mislabelled, sample = [], [], [], []
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        images = _images(info)
        missing += [path for path in images if not osp.isfile(path)]
        label_map = info.get('seg_map_path')
        if label_map is not None and not osp.isfile(label_map):
            unlabelled.append(f'{images[0] if images else "a sample"} (expected {label_map})')
        if classes and 'gt_label' in info:  # a classification sample
            labels = np.asarray(info['gt_label'])
            if not np.all((labels >= 0) & (labels < len(classes))):
                mislabelled.append(f'{info.get("img_path")} {labels.tolist()}')
        if i in wanted:
            sample.append(info)
    if missing:
        listed = f' listed in {dataset.ann_file}' if dataset.ann_file else ''
        raise FileNotFoundError(f'missing images{listed} ({len(missing)}): {_listing(missing)}'
                                f'{_hint(missing[0])}')
    if unlabelled:
        raise FileNotFoundError(f'images without a label map ({len(unlabelled)}): '
                                f'{_listing(unlabelled)}')
    if mislabelled:
        raise ValueError(f'{len(mislabelled)} samples of {dataset.ann_file or "the set"} have '
                         f'labels outside [0, {len(classes)}) ({len(classes)} classes): '
                         f'{_listing(mislabelled)}')
    return sample


def _decode(path):
    """Decode an image strictly (a truncated file fails); an error names the file.

    Returns:
        PIL.Image.Image: the decoded image (to close).
    """
    try:
        image = Image.open(path)
        image.load()
        return image
    except Exception as e:  # PIL raises several kinds: UnidentifiedImageError, OSError, ...
        raise ValueError(f'cannot decode {path}: {e}; regenerate or remove it') from e


def _train_ids(values, reduce_zero_label, label_map):
    """``values`` of a label map as mmseg's ``LoadAnnotations`` turns them into training ids."""
    values = values.astype(np.int64)
    if reduce_zero_label:
        values = np.where(values == 0, 255, values - 1)
        values[values == 254] = 255
    mapped = values.copy()
    for old, new in (label_map or {}).items():
        mapped[values == old] = new
    return mapped


def _check_label_values(infos, dataset):
    """Every value of the label maps must be a class index or the ignore index after the set's
    ``reduce_zero_label`` and class remapping (``label_map``)."""
    classes = dataset.metainfo.get('classes')
    if not classes:
        return
    bad = []
    for info in infos:
        path = info.get('seg_map_path')
        if path is None:
            continue
        with _decode(path) as image:
            labels = np.asarray(image)
        if labels.ndim != 2:
            raise ValueError(f'label map {path} has shape {labels.shape}; it must have one '
                             'channel of class indices')
        values = np.unique(labels)
        ids = _train_ids(values, info.get('reduce_zero_label'), info.get('label_map'))
        wrong = values[~(((ids >= 0) & (ids < len(classes))) | (ids == dataset.ignore_index))]
        if len(wrong):
            bad.append(f'{path} {wrong.tolist()}')
    if bad:
        reduced = ' after reduce_zero_label' if dataset.reduce_zero_label else ''
        raise ValueError(f'{len(bad)} label maps hold values{reduced} outside [0, {len(classes)}) '
                         f'({len(classes)} classes) that are not the ignore index '
                         f'{dataset.ignore_index}: {_listing(bad)}')


def _read_coco(dataset):
    """The COCO file of ``dataset``, checked for what mmdet's ``CocoDataset`` would drop without
    a word: classes that are no category, annotations of unknown images or categories, boxes
    outside their image.

    Returns:
        dict: the COCO file.
    """
    ann_file = dataset.ann_file
    if not ann_file:
        raise ValueError(f'the {type(dataset).__name__} config has no ann_file; set it to the '
                         'COCO json')
    try:
        with open(ann_file) as f:
            coco = json.load(f)
    except ValueError as e:
        raise ValueError(f'COCO annotation file {ann_file} is not valid JSON: {e}') from e
    missing = [key for key in COCO_KEYS if not isinstance(coco, dict) or key not in coco]
    if missing:
        raise ValueError(f'COCO annotation file {ann_file} lacks the keys {missing}; a COCO file '
                         f'is a JSON object with {list(COCO_KEYS)}')
    classes = dataset.metainfo['classes']
    names = [category['name'] for category in coco['categories']]
    unknown = [name for name in classes if name not in names]
    if unknown:
        raise ValueError(f'classes of the config that are not categories of {ann_file}: '
                         f'{_listing(unknown)} (its categories: {_listing(names)}); set '
                         'metainfo=dict(classes=...) in the dataset config to category names')
    images = {image['id']: image for image in coco['images']}
    orphans = [
        f'{ann.get("id")} (image_id {ann.get("image_id")})' for ann in coco['annotations']
        if ann.get('image_id') not in images
    ]
    if orphans:
        raise ValueError(f'annotations of {ann_file} whose image_id is no image of the file '
                         f'({len(orphans)}): {_listing(orphans)}; each must be the id of an '
                         'entry of "images"')
    category_ids = {category['id'] for category in coco['categories']}
    uncategorised = [
        f'{ann.get("id")} (category_id {ann.get("category_id")})' for ann in coco['annotations']
        if ann.get('category_id') not in category_ids
    ]
    if uncategorised:
        raise ValueError(f'annotations of {ann_file} whose category_id is no category of the '
                         f'file ({len(uncategorised)}): {_listing(uncategorised)}')
    outside = [
        f'{ann.get("id")} {ann.get("bbox")} in {image["file_name"]} '
        f'({image["width"]}x{image["height"]})' for ann in coco['annotations']
        for image in [images[ann['image_id']]] if not _box_within(ann.get('bbox'), image)
    ]
    if outside:
        raise ValueError(f'annotations of {ann_file} whose bbox is not [x, y, width, height] '
                         f'within their image ({len(outside)}): {_listing(outside)}')
    return coco


def _box_within(bbox, image):
    if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4
            and all(isinstance(v, (int, float)) for v in bbox)):
        return False
    x, y, w, h = bbox
    return (min(x, y) >= -BOX_TOLERANCE and x + w <= image['width'] + BOX_TOLERANCE
            and y + h <= image['height'] + BOX_TOLERANCE)


def _empty_set_error(dataset, name, coco):
    """The error for a dataset without samples, saying what emptied it."""
    ann_file = dataset.ann_file
    unfiltered = len(dataset.load_data_list())  # before filter_cfg and indices
    if unfiltered and dataset.filter_cfg:
        why = _why_coco_filtered(dataset, coco) if coco is not None else ''
        return ValueError(f'the {name} has no samples: filter_cfg={dataset.filter_cfg} removed '
                          f'all {unfiltered} of {ann_file or "the set"}{why}')
    if unfiltered:
        return ValueError(f'the {name} has no samples: none of the {unfiltered} of '
                          f'{ann_file or "the set"} remains after its filter_data and indices')
    if ann_file:
        return ValueError(f'the {name} has no samples: {ann_file} lists none')
    if _is_a(dataset, 'mmseg.datasets', 'BaseSegDataset'):
        image_dir = dataset.data_prefix.get('img_path')
        return FileNotFoundError(f'no image ending with {dataset.img_suffix!r} under {image_dir}; '
                                 'check data_prefix and img_suffix in the config')
    return ValueError(f'the {name} of {dataset.data_root or "."} has no samples'
                      f'{_hint(dataset.data_root)}')


def _why_coco_filtered(dataset, coco):
    """Why mmdet's ``filter_empty_gt`` and ``min_size`` removed every image of ``coco``."""
    min_size = dataset.filter_cfg.get('min_size', 0)
    if all(min(image['width'], image['height']) < min_size for image in coco['images']):
        return f': every image is smaller than min_size={min_size} on its short side'
    if not dataset.filter_cfg.get('filter_empty_gt', False):
        return ''
    if not coco['annotations']:
        return ': the file has no annotations, and filter_empty_gt=True drops images without any'
    classes = dataset.metainfo['classes']
    ids = {category['id'] for category in coco['categories'] if category['name'] in classes}
    if not any(ann['category_id'] in ids for ann in coco['annotations']):
        return (f': no annotation is of the classes {_listing(list(classes))}, and '
                'filter_empty_gt=True drops images without any')
    return (f': no image at least min_size={min_size} on its short side holds an annotation of '
            'the classes (filter_empty_gt=True)')
