"""Preflight checks of a config's datasets: a clear error naming the path before a run starts,
rather than an empty dataset or an obscure one in a data loader worker.

Each dataset is built by its toolbox's own ``DATASETS`` registry, with an empty pipeline, as
mmpretrain's ``tools/misc/verify_dataset.py`` does, and its files are read from
``get_data_info(i)``: every dataset class, ``split``, ``ann_file``, label map,
``reduce_zero_label`` and ``filter_cfg`` is honoured as in training.

mmcv's ``LoadImageFromFile`` names an image it cannot decode with OpenCV (its default), but not an
empty file nor one that fails with ``imdecode_backend='pillow'``, and mmseg's ``LoadAnnotations``
never names the label map. So the check decodes the images and label maps itself (all of them up
to ``max_scan`` per dataset, an even sample beyond), and compares their sizes: a label map of
another size than its image, or an image of another size than its annotation file states, trains
wrongly without an error. mmdet's ``CocoDataset`` silently drops annotations of unknown images or
categories, boxes of negative size and annotations of no area, so the COCO file itself is read
too; mmpretrain's folder sets label their samples by the folders' sorted order, whatever the
config's classes, so the folders are compared with the classes.

A dataset's files that a toolbox would read with a loader that can run code (pickles, YAML) are
read safely first, before the dataset is built (:mod:`mmxformer.data.safe_files`).
"""
import json
import os.path as osp
import re
from collections import Counter
from importlib import import_module

import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.registry import DefaultScope
from PIL import Image

from ..registry import TOOLBOXES
from .safe_files import check_data_file

MAX_SCAN = 5000
SPLITS = ('train', 'val', 'test')
SHOWN = 5  # offending files an error names
COCO_KEYS = ('images', 'categories')  # a test set's image info file has no 'annotations'
# What pycocotools and mmdet's CocoDataset read of each entry (a missing one is a KeyError there).
COCO_FIELDS = dict(
    images=('id', 'file_name', 'width', 'height'),
    annotations=('id', 'image_id', 'category_id', 'bbox', 'area'),
    categories=('id', 'name'))
# Fields that must be numbers: positive ones (image sizes), any (areas: 0 gets its own error).
COCO_NUMBERS = dict(images=('width', 'height'), annotations=('area', ))
EXIF_ORIENTATION = 0x0112
# EXIF orientations that turn the picture by 90 degrees: OpenCV (mmcv's default decoder) and
# Pillow (mmcv's, for colour images) apply them, so the decoded image has width and height swapped.
TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)
# Real annotation files round box corners to a fraction of a pixel beyond the border (COCO has
# such boxes); a box further out than this points at the wrong image or the wrong units.
BOX_TOLERANCE = 1.0
# What a build or a load of the toolboxes' datasets raises for a wrong config or annotation file
# (their own checks are asserts; a missing file, an OSError, passes unchanged).
DATASET_ERRORS = (AssertionError, KeyError, IndexError, RuntimeError, TypeError, ValueError)


def check_dataset_config(cfg, max_scan=MAX_SCAN, splits=SPLITS):
    """Check the datasets of a config's data loaders of ``splits``.

    Wrappers (``RepeatDataset``, ``ConcatDataset``, ``ClassBalancedDataset``, ...) are looked
    through. Of every dataset, the pickles and YAML files among its ``*_file`` settings are read
    with loaders that run no code (:func:`mmxformer.data.safe_files.check_data_file`) before
    anything else. Every dataset derived from mmengine's ``BaseDataset`` is then built (without
    its pipeline) and checked: the annotation file and data directories exist, it has samples,
    every file of its samples exists, and the images and label maps of up to ``max_scan``
    samples decode, label maps with their image's size and images with the size the annotation
    file states; label maps of mmseg sets hold class indices or the ignore index after the set's
    ``reduce_zero_label`` and label map; classification labels lie within the classes, and the
    class folders of a folder set are the config's classes in their order; COCO files are
    complete and consistent (the fields of every entry, unique ids, categories, boxes of
    positive size within their image, areas). Of any other dataset, only ``data_root`` is
    checked.

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
        mmxformer.data.safe_files.UnsafeDataFileError: (a ValueError) a file of the dataset
            would run code when its toolbox reads it.
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
        raise FileNotFoundError(f'data_root {root} of the {name} {_no_dir(root)}')
    _check_data_files(dataset_cfg, root)
    classes = (dataset_cfg.get('metainfo') or {}).get('classes')
    if isinstance(classes, str) and not osp.isfile(classes):
        # mmengine reads a string as a file of class names, else keeps it: then every toolbox
        # takes its letters for the classes
        raise ValueError(f'metainfo classes of the {name} is the string {classes!r}, which is no '
                         'file of class names; a tuple of one class needs a comma: '
                         f'classes=({classes!r}, )')
    if not issubclass(cls, BaseDataset):
        return f'{name} {root}: not an mmengine BaseDataset, only data_root checked'
    dataset = _build(dataset_cfg, scope, cls, root)
    _require_paths(dataset, name)
    coco = _read_coco(dataset) if _is_a(dataset, 'mmdet.datasets', 'CocoDataset') else None
    try:
        dataset.full_init()
    except DATASET_ERRORS as e:
        source = f' from {dataset.ann_file}' if dataset.ann_file else ''
        raise ValueError(f'the {name} of {root or "."} cannot load its samples{source}: '
                         f'{_bad_label_line(dataset) or e}') from e
    if len(dataset) == 0:
        raise _empty_set_error(dataset, name, coco)
    _check_class_folders(dataset, dataset_cfg)
    is_seg = _is_a(dataset, 'mmseg.datasets', 'BaseSegDataset')
    if is_seg and not dataset.metainfo.get('classes'):
        # mmseg trains without them, and its IoUMetric then fails at the first validation
        raise ValueError(f'the {name} of {root or "."} has no classes: set '
                         'metainfo=dict(classes=(...)) in the dataset config, one name per class '
                         'index of the label maps')
    sample = _check_samples(dataset, max_scan)
    _check_decoded(sample, dataset, is_seg)
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


def _no_dir(path):
    """What is wrong with ``path``, which is no directory, and how to make it, if we know."""
    return 'is a file, not a directory' if osp.exists(path) else f'does not exist{_hint(path)}'


def _check_data_files(dataset_cfg, root):
    """Read the files of the config (``ann_file``, ``proposal_file``, ... every ``*_file``) that a
    toolbox would read with a loader that can run code, safely, before the dataset is built (some
    datasets read theirs when built)."""
    for key, path in dataset_cfg.items():
        if not (key.endswith('_file') and isinstance(path, str) and path and '://' not in path):
            continue
        # mmengine joins them to data_root; the path as given is read too, for a dataset class
        # that does not join it
        for candidate in {osp.join(root, path), path}:
            if osp.isfile(candidate):
                check_data_file(candidate)


def _require_paths(dataset, name):
    """The annotation file and the data directories the built dataset will read must exist."""
    ann_file = dataset.ann_file
    if ann_file and '://' not in ann_file and not osp.isfile(ann_file):
        if osp.isdir(ann_file):
            raise FileNotFoundError(f'annotation file {ann_file} of the {name} is a directory; '
                                    'set ann_file to the file in it')
        raise FileNotFoundError(f'annotation file {ann_file} of the {name} does not exist'
                                f'{_hint(ann_file)}')
    for key, path in dataset.data_prefix.items():
        if isinstance(path, str) and path and '://' not in path and not osp.isdir(path):
            what = dict(
                img='image directory',
                img_path='image directory',
                seg='label directory',
                seg_map_path='label directory').get(key)
            raise FileNotFoundError(f'{what or f"data_prefix {key}"} {path} of the {name} '
                                    f'{_no_dir(path)}')


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


def _decoded_size(image):
    """``(width, height)`` of a PIL ``image`` as the toolboxes' image loaders decode it."""
    width, height = image.size
    if image.getexif().get(EXIF_ORIENTATION) in TRANSPOSING_ORIENTATIONS:
        return height, width
    return width, height


def _wxh(size):
    return f'{size[0]}x{size[1]}'


def _check_decoded(infos, dataset, is_seg):
    """Decode the images and label maps of ``infos``: each must decode, an image have the size
    that its annotation file states (mmdet's ``width`` and ``height``), a label map its image's
    size and, of a segmentation set, hold class indices (:func:`_wrong_label_values`)."""
    misstated, missized, lossy, bad_values = [], [], [], []
    for info in infos:
        sizes = {}
        for path in _images(info):
            with _decode(path) as image:
                sizes[path] = _decoded_size(image)
        size = sizes.get(info.get('img_path'))
        stated = (info.get('width'), info.get('height'))
        if size and None not in stated and tuple(stated) != size:
            misstated.append(f'{info["img_path"]} ({_wxh(size)}, stated {_wxh(stated)})')
        label_path = info.get('seg_map_path')
        if not label_path:
            continue
        with _decode(label_path) as label_map:
            labels = np.asarray(label_map)  # mmseg reads label maps unchanged: no EXIF turn
            if label_map.format == 'JPEG':
                lossy.append(label_path)
        label_size = labels.shape[1::-1]
        if size and label_size != size:
            turned = ', transposed' if label_size == size[::-1] else ''
            missized.append(f'{label_path} ({_wxh(label_size)}{turned}) of {info["img_path"]} '
                            f'({_wxh(size)})')
        if is_seg:
            bad_values += _wrong_label_values(labels, label_path, info, dataset)
    if misstated:
        raise ValueError(f'images whose size is not the one {dataset.ann_file} states '
                         f'({len(misstated)}): {_listing(misstated)}; set their width and height '
                         "there to the files' sizes (as decoded, after any EXIF orientation)")
    if missized:
        raise ValueError(f'label maps of another size than their image ({len(missized)}): '
                         f'{_listing(missized)}; a label map must have its image\'s width and '
                         'height: regenerate the label maps (or the images) at the same size')
    if lossy:
        raise ValueError(f'label maps saved as JPEG ({len(lossy)}): {_listing(lossy)}; its lossy '
                         'compression changes the class indices along the edges of objects: save '
                         'label maps losslessly, as PNG')
    if bad_values:
        classes = dataset.metainfo['classes']
        reduced = ' after reduce_zero_label' if dataset.reduce_zero_label else ''
        raise ValueError(f'{len(bad_values)} label maps hold values{reduced} outside '
                         f'[0, {len(classes)}) ({len(classes)} classes) that are not the ignore '
                         f'index {dataset.ignore_index}: {_listing(bad_values)}')


def _wrong_label_values(labels, path, info, dataset):
    """``['PATH [values]']`` if the label map ``labels`` holds values that are neither a class
    index nor the ignore index after the set's ``reduce_zero_label`` and class remapping
    (``label_map``), else ``[]``."""
    classes = dataset.metainfo['classes']
    if labels.ndim != 2:
        raise ValueError(f'label map {path} has shape {labels.shape}; it must have one '
                         'channel of class indices')
    values = np.unique(labels)
    ids = _train_ids(values, info.get('reduce_zero_label'), info.get('label_map'))
    wrong = values[~(((ids >= 0) & (ids < len(classes))) | (ids == dataset.ignore_index))]
    return [f'{path} {wrong.tolist()}'] if len(wrong) else []


def _check_class_folders(dataset, dataset_cfg):
    """mmpretrain labels a folder set (a ``CustomDataset`` without ``ann_file``) by the folders'
    sorted order, whatever the classes say (it compares their numbers only): where the config
    names the classes, folder ``i`` must be class ``i``. (Of a class's own ``METAINFO``, such as
    ImageNet's names for its ``n01440764``-style folders, the order is the folders' by design.)"""
    folder_to_idx = getattr(dataset, 'folder_to_idx', None)
    metainfo = dataset_cfg.get('metainfo') or {}
    if not folder_to_idx or not (metainfo.get('classes') or dataset_cfg.get('classes')):
        return
    classes = dataset.metainfo['classes']
    wrong = [
        f'{folder}/ gets label {idx} ({classes[idx]})' for folder, idx in folder_to_idx.items()
        if folder != classes[idx]
    ]
    if wrong:
        raise ValueError(
            f'the class folders of {dataset.data_prefix.get("img_path")} are not the classes of '
            f'the config in their order: mmpretrain labels the samples of a folder set by the '
            f"folders' sorted order, so {_listing(wrong)}; rename the folders to the classes, or "
            f"set classes to the folders' sorted order ({_listing(sorted(folder_to_idx))})")


def _bad_label_line(dataset):
    """Why mmpretrain's ``CustomDataset`` could not read its ``ann_file`` of ``PATH LABEL``
    lines (it fails with an unpacking or ``int()`` error that names neither file nor line), or
    None."""
    custom = _toolbox_class('mmpretrain.datasets', 'CustomDataset')
    if (custom is None or type(dataset).load_data_list is not custom.load_data_list
            or not dataset.ann_file or not dataset.with_label):
        return None
    with open(dataset.ann_file, errors='replace') as f:
        for number, line in enumerate(f, 1):
            parts = line.strip().rsplit(' ', 1)
            if len(parts) != 2 or not _is_int(parts[1]):
                return (f'line {number} is {line.rstrip(chr(10))!r}, not '
                        "'PATH LABEL' (an image path, a space, an integer class index); with "
                        'with_label=False the file lists paths without labels')
    return None


def _is_int(text):
    try:
        int(text)
    except ValueError:
        return False
    return True


def _read_coco(dataset):
    """The COCO file of ``dataset``, checked for what pycocotools or mmdet's ``CocoDataset`` fail
    on with a bare ``KeyError`` (entries that lack a field), and for what they would drop or mix
    up without a word: entries that share an id, categories that share a name, classes that are
    no category, annotations of unknown images or categories, boxes of negative size or outside
    their image, annotations of no area.

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
                         f'is a JSON object with {list(COCO_KEYS)} (and "annotations")')
    coco.setdefault('annotations', [])
    _check_coco_entries(coco, ann_file)
    classes = dataset.metainfo['classes']
    names = [category['name'] for category in coco['categories']]
    unknown = [name for name in classes if name not in names]
    if unknown:
        raise ValueError(f'classes of the config that are not categories of {ann_file}: '
                         f'{_listing(unknown)} (its categories: {_listing(names)}); set '
                         'metainfo=dict(classes=...) in the dataset config to category names')
    images = {image['id']: image for image in coco['images']}
    annotations = coco['annotations']
    orphans = [
        f'{ann["id"]} (image_id {ann["image_id"]})' for ann in annotations
        if ann['image_id'] not in images
    ]
    if orphans:
        raise ValueError(f'annotations of {ann_file} whose image_id is no image of the file '
                         f'({len(orphans)}): {_listing(orphans)}; each must be the id of an '
                         'entry of "images"')
    category_ids = {category['id'] for category in coco['categories']}
    uncategorised = [
        f'{ann["id"]} (category_id {ann["category_id"]})' for ann in annotations
        if ann['category_id'] not in category_ids
    ]
    if uncategorised:
        raise ValueError(f'annotations of {ann_file} whose category_id is no category of the '
                         f'file ({len(uncategorised)}): {_listing(uncategorised)}')
    _check_coco_boxes(annotations, images, ann_file)
    return coco


def _check_coco_entries(coco, ann_file):
    """Every entry of the COCO file must be an object with the fields that pycocotools and mmdet
    read (:data:`COCO_FIELDS`), image sizes positive numbers and areas numbers; ids must be
    unique (pycocotools indexes entries by id and keeps one of each: an image would take the
    annotations of both), and image file names and category names too (mmdet takes every
    category of a class's name, so that a class would get two labels)."""
    for key, fields in COCO_FIELDS.items():
        entries = coco[key]
        if not isinstance(entries, list):
            raise ValueError(f'"{key}" of {ann_file} is a {type(entries).__name__}; it must be a '
                             f'list of objects with {", ".join(fields)}')
        wrong = []
        numbers = COCO_NUMBERS.get(key, ())
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                wrong.append(f'entry {i} ({json.dumps(entry)[:40]}) is not an object')
                continue
            lacking = [field for field in fields if field not in entry]
            not_numbers = [
                field for field in numbers
                if field in entry and not _is_number(entry[field], positive=key == 'images')
            ]
            if lacking or not_numbers:
                what = f'entry {i}' + (f' (id {entry["id"]})' if 'id' in entry else '')
                wrong.append(f'{what} lacks {", ".join(lacking)}' if lacking else ', '.join(
                    f'{what} has {field} {entry[field]!r}' for field in not_numbers))
        if wrong:
            sizes = '; width and height are positive numbers' if key == 'images' else ''
            areas = '; area is a number' if key == 'annotations' else ''
            raise ValueError(f'entries of "{key}" in {ann_file} that cannot be read '
                             f'({len(wrong)}): {_listing(wrong)}; each entry of "{key}" needs '
                             f'{", ".join(fields)}{sizes}{areas}')
    for key, field, why in (
        ('images', 'id', 'pycocotools keeps the last image of an id and gives it the '
         'annotations of all'),
        ('images', 'file_name', 'mmdet would train on the file once per entry, with the '
         "annotations of one entry each time: merge the entries' annotations into one"),
        ('annotations', 'id', 'pycocotools keeps one annotation of an id'),
        ('categories', 'id', 'pycocotools keeps one category of an id'),
        ('categories', 'name', 'mmdet takes every category of a class name, which gives the '
         'class two labels'),
    ):
        shared = _shared([entry[field] for entry in coco[key]])
        if shared:
            raise ValueError(f'entries of "{key}" in {ann_file} that share their {field} '
                             f'({len(shared)}): {_listing(shared)}; give each its own {field} '
                             f'({why})')


def _shared(values):
    """``['VALUE (N entries)']`` of the JSON ``values`` that occur more than once."""
    try:
        if len(set(values)) == len(values):
            return []
    except TypeError:  # a list or an object among them
        pass
    counts = Counter(json.dumps(value) for value in values)
    return [f'{value} ({count} entries)' for value, count in counts.items() if count > 1]


def _is_number(value, positive=False):
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and (value > 0 or not positive))


def _check_coco_boxes(annotations, images, ann_file):
    """Every bbox must be four numbers ``[x, y, width, height]``, of no negative size, within its
    image, and every annotation have an area: mmdet drops the others without a word. (Checked
    on arrays: COCO's training file has 860k annotations.)"""
    boxes = _box_array(annotations)
    if boxes is None:
        malformed = [
            f'{ann["id"]} {ann["bbox"]!r}' for ann in annotations if _box_array([ann]) is None
        ]
        raise ValueError(f'annotations of {ann_file} whose bbox is not [x, y, width, height] '
                         f'(four numbers) ({len(malformed)}): {_listing(malformed)}')
    x, y, w, h = boxes.T
    negative = [
        f'{annotations[i]["id"]} {annotations[i]["bbox"]}'
        for i in np.flatnonzero((w < 0) | (h < 0))
    ]
    if negative:
        raise ValueError(f'annotations of {ann_file} whose bbox has a negative width or height '
                         f'({len(negative)}): {_listing(negative)}; mmdet would drop them without '
                         'a word. A COCO bbox is [x, y, width, height], not [x1, y1, x2, y2]: fix '
                         'what wrote them')
    sizes = [(images[ann['image_id']]['width'], images[ann['image_id']]['height'])
             for ann in annotations]
    width, height = np.array(sizes, float).reshape(-1, 2).T
    within = ((np.minimum(x, y) >= -BOX_TOLERANCE) & (x + w <= width + BOX_TOLERANCE)
              & (y + h <= height + BOX_TOLERANCE))
    outside = [
        f'{ann["id"]} {ann["bbox"]} in {image["file_name"]} ({image["width"]}x{image["height"]})'
        for ann in (annotations[i] for i in np.flatnonzero(~within))
        for image in [images[ann['image_id']]]
    ]
    if outside:
        raise ValueError(f'annotations of {ann_file} whose bbox is not [x, y, width, height] '
                         f'within their image ({len(outside)}): {_listing(outside)}')
    no_area = [f'{ann["id"]} (area {ann["area"]})' for ann in annotations if ann['area'] <= 0]
    if no_area:
        raise ValueError(f'annotations of {ann_file} of no area ({len(no_area)}): '
                         f'{_listing(no_area)}; mmdet would drop them without a word: set area '
                         "to the object's area in pixels (of its mask, or its box's width * "
                         'height)')


def _box_array(annotations):
    """The bboxes of ``annotations`` as an ``(N, 4)`` float array, or None if one of them is not
    four numbers."""
    try:
        boxes = np.array([ann['bbox'] for ann in annotations] or np.zeros((0, 4)))
    except ValueError:  # numpy refuses lists of other lengths
        return None
    if boxes.shape != (len(annotations), 4) or boxes.dtype.kind not in 'biuf':
        return None  # a bbox of other length, or of strings or nulls
    return boxes.astype(float)


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
