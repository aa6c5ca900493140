"""Preflight checks of a config's datasets: a clear error naming the path before a run starts,
rather than an empty dataset or an obscure one in a data loader worker.

mmcv's ``LoadImageFromFile`` names an image it cannot decode with OpenCV (its default), but not an
empty file nor one that fails with ``imdecode_backend='pillow'``, and mmseg's ``LoadAnnotations``
never names the label map. So the check decodes the images and label maps itself (all of them up
to ``max_scan`` per dataset, an even sample beyond).
"""
import importlib
import inspect
import json
import os
import os.path as osp
import re

import numpy as np
from PIL import Image

MAX_SCAN = 5000
SHOWN = 5  # offending files an error names
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif')
COCO_KEYS = ('images', 'annotations', 'categories')


def check_dataset_config(cfg, max_scan=MAX_SCAN):
    """Check the datasets of a config's train, val and test data loaders.

    Wrappers (``RepeatDataset``, ``ConcatDataset``, ...) are looked through. COCO sets (mmdet's
    ``CocoDataset`` and subclasses), segmentation sets (mmseg's ``BaseSegDataset`` and subclasses,
    e.g. the Cityscapes layout) and folder sets (mmpretrain's ``CustomDataset`` and subclasses)
    are checked in depth; for any other dataset, ``data_root`` and ``ann_file`` must exist.

    Args:
        cfg (mmengine.Config | dict): A config of mmpretrain, mmdet or mmseg.
        max_scan (int): Most images (and label maps) decoded per dataset; a larger set is checked
            on an even sample of this size. Defaults to 5000.

    Returns:
        list[str]: One line per distinct dataset checked.

    Raises:
        FileNotFoundError: a directory, annotation file, image or label map is missing.
        ValueError: an annotation file, image or label map is unreadable or holds wrong values.
    """
    scope = cfg.get('default_scope')
    checked, lines = [], []
    for split in ('train', 'val', 'test'):
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


def check_dataset(dataset, scope=None, max_scan=MAX_SCAN):
    """Check one dataset config dict; see :func:`check_dataset_config`.

    Returns:
        str: what was checked, e.g. ``'CocoDataset data/digits_det: 2000 images'``.
    """
    cls = dataset_class(dataset.get('type'), scope)
    name = getattr(cls, '__name__', str(dataset.get('type')))
    root = dataset.get('data_root') or ''
    if '://' in str(root):
        return f'{name} {root}: remote, not checked'
    if root and not osp.isdir(root):
        raise FileNotFoundError(f'data_root {root} of the {name} does not exist{_hint(root)}')
    kind = _kind(cls)
    if kind == 'coco':
        count = _check_coco(dataset, cls, root, max_scan)
    elif kind == 'seg':
        count = _check_seg(dataset, cls, root, max_scan)
    elif kind == 'folder':
        count = _check_folder(dataset, cls, root, max_scan)
    else:
        ann_file = _ann_file(dataset, cls, root)
        if ann_file and not osp.exists(ann_file):
            raise FileNotFoundError(f'ann_file {ann_file} of the {name} does not exist'
                                    f'{_hint(ann_file)}')
        return f'{name} {root}: paths exist'
    return f'{name} {root}: {count} images'


def dataset_class(dataset_type, scope=None):
    """The class of ``dataset_type`` (a class, ``'Name'`` or ``'scope.Name'``), or None."""
    if isinstance(dataset_type, type):
        return dataset_type
    if not isinstance(dataset_type, str):
        return None
    type_scope, _, name = dataset_type.rpartition('.')
    toolboxes = [type_scope] if type_scope else [scope, 'mmdet', 'mmseg', 'mmpretrain']
    for toolbox in filter(None, toolboxes):
        try:
            importlib.import_module(f'{toolbox}.datasets')
            registry = importlib.import_module(f'{toolbox}.registry').DATASETS
        except ImportError:
            continue
        if name in registry.module_dict:
            return registry.module_dict[name]
    return None


def _kind(cls):
    """'coco', 'seg' or 'folder': the kind of set ``cls`` reads, if one of those."""
    if cls is None:
        return None
    bases = dict(coco=('mmdet.datasets', 'CocoDataset'), seg=('mmseg.datasets', 'BaseSegDataset'),
                 folder=('mmpretrain.datasets', 'CustomDataset'))
    for kind, (module, base) in bases.items():
        try:
            if issubclass(cls, getattr(importlib.import_module(module), base)):
                return kind
        except ImportError:
            continue
    return None


def _default(cls, name):
    """The default of argument ``name`` of ``cls.__init__`` (looking up the bases)."""
    for klass in cls.__mro__:
        if '__init__' in vars(klass):
            param = inspect.signature(vars(klass)['__init__']).parameters.get(name)
            if param is not None and param.default is not inspect.Parameter.empty:
                return param.default
    return None


def _arg(dataset, cls, name):
    return dataset[name] if name in dataset else _default(cls, name)


def _join(root, path):
    """``path`` under ``root`` the way mmengine's BaseDataset joins them."""
    return osp.join(root, path) if root and not osp.isabs(path) else path


def _ann_file(dataset, cls, root):
    """The dataset's annotation file under ``root``, or '' when it has none."""
    ann_file = _arg(dataset, cls, 'ann_file') if cls is not None else dataset.get('ann_file')
    return _join(root, ann_file) if ann_file else ''


def _hint(path):
    """How to make the set at ``path`` if it is one of the digit sets."""
    match = re.search(r'^(.*?digits_(det|seg|cls))(?:[/\\]|$)', str(path))
    if match:
        return (f'; make it with `python tools/misc/make_digits.py {match[2]} --out {match[1]}` '
                '(or `python tools/misc/make_digits.py all`)')
    return '; check data_root, data_prefix and ann_file in the config'


def _listing(paths):
    more = f' and {len(paths) - SHOWN} more' if len(paths) > SHOWN else ''
    return ', '.join(str(p) for p in paths[:SHOWN]) + more


def _sample(paths, max_scan):
    """All of ``paths`` up to ``max_scan``, else ``max_scan`` of them evenly spread."""
    if len(paths) <= max_scan:
        return paths
    return [paths[i] for i in np.linspace(0, len(paths) - 1, max_scan).astype(int)]


def _require_dir(path, what):
    if not osp.isdir(path):
        raise FileNotFoundError(f'{what} {path} does not exist{_hint(path)}')


def _require_files(paths, what):
    missing = [path for path in paths if not osp.isfile(path)]
    if missing:
        raise FileNotFoundError(f'missing {what} ({len(missing)}): {_listing(missing)}'
                                f'{_hint(missing[0])}')


def _decode(path):
    """Decode an image strictly (a truncated file fails); an error names the file."""
    try:
        with Image.open(path) as image:
            return np.asarray(image)
    except Exception as e:  # PIL raises several kinds: UnidentifiedImageError, OSError, ...
        raise ValueError(f'cannot decode {path}: {e}; regenerate or remove it') from e


def _decode_all(paths, max_scan):
    for path in _sample(paths, max_scan):
        _decode(path)


def _check_coco(dataset, cls, root, max_scan):
    ann_file = _ann_file(dataset, cls, root)
    if not ann_file:
        raise ValueError(f'the {cls.__name__} config has no ann_file; set it to the COCO json')
    if not osp.isfile(ann_file):
        raise FileNotFoundError(f'COCO annotation file {ann_file} does not exist{_hint(ann_file)}')
    try:
        with open(ann_file) as f:
            coco = json.load(f)
    except ValueError as e:
        raise ValueError(f'COCO annotation file {ann_file} is not valid JSON: {e}') from e
    missing = [key for key in COCO_KEYS if not isinstance(coco, dict) or key not in coco]
    if missing:
        raise ValueError(f'COCO annotation file {ann_file} lacks the keys {missing}; a COCO file '
                         f'is a JSON object with {list(COCO_KEYS)}')
    classes = (dataset.get('metainfo') or {}).get('classes') or cls.METAINFO['classes']
    names = [category['name'] for category in coco['categories']]
    unknown = [name for name in classes if name not in names]
    if unknown:
        raise ValueError(f'classes of the config that are not categories of {ann_file}: '
                         f'{_listing(unknown)} (its categories: {_listing(names)}); set '
                         'metainfo=dict(classes=...) in the dataset config to category names')
    prefix = _arg(dataset, cls, 'data_prefix') or {}
    image_dir = _join(root, prefix.get('img', prefix.get('img_path', '')))
    _require_dir(image_dir, 'image directory')
    paths = [osp.join(image_dir, image['file_name']) for image in coco['images']]
    _require_files(paths, f'images listed in {ann_file}')
    _decode_all(paths, max_scan)
    return len(paths)


def _check_seg(dataset, cls, root, max_scan):
    prefix = _arg(dataset, cls, 'data_prefix') or {}
    image_dir = _join(root, prefix.get('img_path', ''))
    label_dir = _join(root, prefix.get('seg_map_path', ''))
    img_suffix = _arg(dataset, cls, 'img_suffix')
    seg_map_suffix = _arg(dataset, cls, 'seg_map_suffix')
    _require_dir(image_dir, 'image directory')
    _require_dir(label_dir, 'label directory')
    ann_file = _ann_file(dataset, cls, root)
    if ann_file:
        _require_files([ann_file], 'annotation file')
        with open(ann_file) as f:
            names = [line.strip() for line in f if line.strip()]
    else:
        names = sorted(
            osp.relpath(osp.join(folder, file), image_dir)[:-len(img_suffix)]
            for folder, _, files in os.walk(image_dir) for file in files
            if file.endswith(img_suffix))
        if not names:
            raise FileNotFoundError(f'no image ending with {img_suffix!r} under {image_dir}; '
                                    'check data_prefix and img_suffix in the config')
    pairs = [(osp.join(image_dir, name + img_suffix), osp.join(label_dir, name + seg_map_suffix))
             for name in names]
    _require_files([image for image, _ in pairs], 'images')
    unlabelled = [f'{image} (expected {label})' for image, label in pairs
                  if not osp.isfile(label)]
    if unlabelled:
        raise FileNotFoundError(f'images without a label map ({len(unlabelled)}): '
                                f'{_listing(unlabelled)}')
    _decode_all([image for image, _ in pairs], max_scan)
    _check_label_values([label for _, label in pairs], dataset, cls, max_scan)
    return len(pairs)


def _check_label_values(paths, dataset, cls, max_scan):
    """Every value of the label maps must be a class index or the ignore index after mmseg's
    ``reduce_zero_label`` and class remapping."""
    base_classes = cls.METAINFO.get('classes')
    classes = (dataset.get('metainfo') or {}).get('classes') or base_classes
    if not classes:
        return
    label_map = {}
    if base_classes and list(classes) != list(base_classes):
        if not set(classes) <= set(base_classes):
            raise ValueError(
                f'{cls.__name__} knows only the classes {list(base_classes)}, not all of '
                f'{list(classes)} (the config\'s metainfo); for a set with other classes use '
                "type='BaseSegDataset' with img_suffix and seg_map_suffix")
        label_map = {i: classes.index(c) if c in classes else 255
                     for i, c in enumerate(base_classes)}
    reduce_zero_label = _arg(dataset, cls, 'reduce_zero_label')
    ignore_index = _arg(dataset, cls, 'ignore_index')

    def train_id(value):
        if reduce_zero_label:
            value = 255 if value in (0, 255) else value - 1
        return label_map.get(value, value)

    bad = []
    for path in _sample(paths, max_scan):
        labels = _decode(path)
        if labels.ndim != 2:
            raise ValueError(f'label map {path} has shape {labels.shape}; it must have one '
                             'channel of class indices')
        values = [int(v) for v in np.unique(labels)
                  if not (train_id(int(v)) < len(classes) or train_id(int(v)) == ignore_index)]
        if values:
            bad.append(f'{path} {values}')
    if bad:
        reduced = ' after reduce_zero_label' if reduce_zero_label else ''
        raise ValueError(f'{len(bad)} label maps hold values{reduced} outside [0, {len(classes)}) '
                         f'({len(classes)} classes) that are not the ignore index {ignore_index}:'
                         f' {_listing(bad)}')


def _check_folder(dataset, cls, root, max_scan):
    prefix = _arg(dataset, cls, 'data_prefix') or ''
    image_dir = _join(root, prefix if isinstance(prefix, str) else prefix.get('img_path', ''))
    ann_file = _ann_file(dataset, cls, root)
    if ann_file:
        _require_files([ann_file], 'annotation file')
        with open(ann_file) as f:
            lines = [line.strip() for line in f if line.strip()]
        with_label = _arg(dataset, cls, 'with_label')
        paths = [osp.join(image_dir, line.rsplit(' ', 1)[0] if with_label else line)
                 for line in lines]
        _require_files(paths, f'images listed in {ann_file}')
    else:
        _require_dir(image_dir, 'image directory')
        extensions = tuple(e.lower() for e in _arg(dataset, cls, 'extensions') or IMAGE_EXTENSIONS)
        paths = sorted(osp.join(folder, file) for folder, _, files in os.walk(image_dir)
                       for file in files if file.lower().endswith(extensions))
        if not paths:
            raise FileNotFoundError(f'no image with an extension of {extensions} under '
                                    f'{image_dir}{_hint(image_dir)}')
    _decode_all(paths, max_scan)
    return len(paths)
