import json
import pickle

import mmengine
import numpy as np
import pytest
from mmengine import Config
from PIL import Image

from mmxformer.data.checks import check_dataset_config
from mmxformer.data.digits import DIGIT_CLASSES, SEG_CLASSES, SEG_PALETTE
from mmxformer.data.digits.segmentation import IMG_SUFFIX, SEG_MAP_SUFFIX
from mmxformer.data.safe_files import UnsafeDataFileError

ANN = 'annotations/instances_val2017.json'
DET, SEG, CLS = (pytest.mark.needs(toolbox) for toolbox in ('mmdet', 'mmseg', 'mmpretrain'))


def det_config(root, **dataset):
    val = dict(
        type='CocoDataset',
        data_root=str(root),
        ann_file=ANN,
        data_prefix=dict(img='val2017/'),
        metainfo=dict(classes=DIGIT_CLASSES))
    val.update(dataset)
    train = dict(type='RepeatDataset', times=2, dataset=dict(val, ann_file=ANN))
    return Config(
        dict(
            default_scope='mmdet',
            train_dataloader=dict(dataset=train),
            val_dataloader=dict(dataset=val),
            test_dataloader=dict(dataset=val)))


def seg_config(root, **dataset):
    train = dict(
        type='BaseSegDataset',
        data_root=str(root),
        img_suffix=IMG_SUFFIX,
        seg_map_suffix=SEG_MAP_SUFFIX,
        metainfo=dict(classes=SEG_CLASSES, palette=SEG_PALETTE),
        data_prefix=dict(img_path='leftImg8bit/train', seg_map_path='gtFine/train'))
    train.update(dataset)
    return Config(
        dict(
            default_scope='mmseg',
            train_dataloader=dict(dataset=dict(type='ConcatDataset', datasets=[train]))))


def cls_config(root):
    return Config(
        dict(
            default_scope='mmpretrain',
            test_dataloader=dict(
                dataset=dict(type='CustomDataset', data_root=str(root), data_prefix='test'))))


def first_label(root):
    return sorted((root / 'gtFine' / 'train' / 'digits').iterdir())[0]


@DET
@SEG
@CLS
def test_complete_sets_pass(tiny_sets):
    assert check_dataset_config(det_config(tiny_sets['det'])) == [
        f"train: CocoDataset {tiny_sets['det']}: 3 images (all checked)"
    ]  # val, test: the same
    assert check_dataset_config(seg_config(tiny_sets['seg'])) == [
        f"train: BaseSegDataset {tiny_sets['seg']}: 4 images with label maps (all checked)"
    ]
    assert check_dataset_config(cls_config(
        tiny_sets['cls'])) == [f"test: CustomDataset {tiny_sets['cls']}: 10 images (all checked)"]


@pytest.mark.parametrize('task, config', [
    pytest.param('det', det_config, marks=DET),
    pytest.param('seg', seg_config, marks=SEG),
    pytest.param('cls', cls_config, marks=CLS)
])
def test_missing_digit_set_says_how_to_make_it(tmp_path, task, config):
    root = tmp_path / 'data' / f'digits_{task}'
    with pytest.raises(FileNotFoundError) as error:
        check_dataset_config(config(root))
    assert str(root) in str(error.value)
    assert f'python tools/misc/make_digits.py {task} --out {root}' in str(error.value)


@DET
def test_missing_image_dir(copy_set):
    root = copy_set('det')
    with pytest.raises(FileNotFoundError, match=str(root / 'valimages')):
        check_dataset_config(det_config(root, data_prefix=dict(img='valimages/')))


@DET
def test_missing_annotation_file(copy_set):
    root = copy_set('det')
    (root / ANN).unlink()
    with pytest.raises(FileNotFoundError, match=str(root / ANN)):
        check_dataset_config(det_config(root))


@DET
def test_annotation_file_not_json(copy_set):
    root = copy_set('det')
    (root / ANN).write_text('{"images": [')
    with pytest.raises(ValueError, match=f'{root / ANN} is not valid JSON'):
        check_dataset_config(det_config(root))


@DET
def test_annotation_file_without_images(copy_set):
    root = copy_set('det')
    coco = json.loads((root / ANN).read_text())
    del coco['images']
    (root / ANN).write_text(json.dumps(coco))
    with pytest.raises(ValueError, match=rf"{root / ANN} lacks the keys \['images'\]"):
        check_dataset_config(det_config(root))


@DET
def test_classes_that_are_not_categories(tiny_sets):
    config = det_config(tiny_sets['det'], metainfo=dict(classes=('0', 'seven')))
    with pytest.raises(ValueError, match=f'{ANN}: seven'):
        check_dataset_config(config)


@DET
def test_missing_images_are_named(copy_set):
    root = copy_set('det')
    (root / 'val2017' / '000000000002.jpg').unlink()
    with pytest.raises(FileNotFoundError, match=str(root / 'val2017' / '000000000002.jpg')):
        check_dataset_config(det_config(root))


@pytest.mark.parametrize('damage', ['garbage', 'truncated', 'empty'])
@DET
def test_undecodable_image_is_named(copy_set, damage):
    root = copy_set('det')
    path = root / 'val2017' / '000000000003.jpg'
    data = path.read_bytes()
    path.write_bytes(
        dict(garbage=b'not an image' * 9, truncated=data[:len(data) // 2], empty=b'')[damage])
    with pytest.raises(ValueError, match=f'cannot decode {path}'):
        check_dataset_config(det_config(root))


@SEG
def test_image_without_label_names_both(copy_set):
    root = copy_set('seg')
    label = first_label(root)
    label.unlink()
    image = (
        root / 'leftImg8bit' / 'train' / 'digits' / label.name.replace(SEG_MAP_SUFFIX, IMG_SUFFIX))
    with pytest.raises(FileNotFoundError) as error:
        check_dataset_config(seg_config(root))
    assert str(image) in str(error.value) and str(label) in str(error.value)


@SEG
def test_no_image_with_the_suffix(tiny_sets):
    with pytest.raises(FileNotFoundError, match="'_image.png'"):
        check_dataset_config(seg_config(tiny_sets['seg'], img_suffix='_image.png'))


@SEG
def test_label_values_out_of_range_are_named(copy_set):
    root = copy_set('seg')
    label = first_label(root)
    values = np.array(Image.open(label))
    values[0, :2] = (11, 200)
    Image.fromarray(values).save(label)
    with pytest.raises(ValueError, match=rf'{label} \[11, 200\]'):
        check_dataset_config(seg_config(root))


@SEG
def test_reduce_zero_label_shifts_the_valid_values(tiny_sets):
    # Shifted down by one, the digit '9' (10) is class 9 of ten: valid; 0 becomes ignored.
    config = seg_config(
        tiny_sets['seg'],
        reduce_zero_label=True,
        metainfo=dict(classes=SEG_CLASSES[1:], palette=SEG_PALETTE[1:]))
    assert check_dataset_config(config)
    with pytest.raises(ValueError, match='after reduce_zero_label'):
        check_dataset_config(
            seg_config(
                tiny_sets['seg'], reduce_zero_label=True, metainfo=dict(classes=SEG_CLASSES[2:])))


@SEG
def test_colour_label_map_is_rejected(copy_set):
    root = copy_set('seg')
    label = first_label(root)
    Image.fromarray(np.zeros((128, 256, 3), np.uint8)).save(label)
    with pytest.raises(ValueError, match=f'label map {label} has shape'):
        check_dataset_config(seg_config(root))


@SEG
def test_corrupt_label_map_is_named(copy_set):
    root = copy_set('seg')
    label = first_label(root)
    label.write_bytes(b'\x89PNG broken')
    with pytest.raises(ValueError, match=f'cannot decode {label}'):
        check_dataset_config(seg_config(root))


@SEG
def test_cityscapes_dataset_with_digit_classes_points_to_base_seg_dataset(tiny_sets):
    with pytest.raises(ValueError, match="type='BaseSegDataset'"):
        check_dataset_config(seg_config(tiny_sets['seg'], type='CityscapesDataset'))


@CLS
def test_corrupt_classification_image_is_named(copy_set):
    root = copy_set('cls')
    path = sorted((root / 'test').glob('*/*.png'))[4]
    path.write_bytes(b'garbage')
    with pytest.raises(ValueError, match=f'cannot decode {path}'):
        check_dataset_config(cls_config(root))


@CLS
def test_large_sets_are_sampled(copy_set):
    root = copy_set('cls')
    paths = sorted((root / 'test').glob('*/*.png'))
    paths[1].write_bytes(b'garbage')  # not among 2 evenly spread of 10
    assert check_dataset_config(
        cls_config(root), max_scan=2) == [f'test: CustomDataset {root}: 10 images, 2 checked']
    paths[-1].write_bytes(b'garbage')
    with pytest.raises(ValueError, match=str(paths[-1])):
        check_dataset_config(cls_config(root), max_scan=2)


def imagenet_style_set(root, counts=dict(train=2, val=1)):
    """``root/{train,val}/{a,b}/N.png``: an ImageNet-style folder set of two classes."""
    for split, count in counts.items():
        for label in 'ab':
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(folder / f'{i}.png')
    return root


def imagenet_config(root, **dataset):
    train = dict(
        type='ImageNet', data_root=str(root), split='train', metainfo=dict(classes=('a', 'b')))
    train.update(dataset)
    return Config(
        dict(
            default_scope='mmpretrain',
            train_dataloader=dict(dataset=train),
            val_dataloader=dict(dataset=dict(train, split='val'))))


@CLS
def test_imagenet_style_split_counts_only_its_folder(tmp_path):
    root = imagenet_style_set(tmp_path / 'imagenet')
    assert check_dataset_config(imagenet_config(root)) == [
        f'train: ImageNet {root}: 4 images (all checked)',
        f'val: ImageNet {root}: 2 images (all checked)'
    ]


@CLS
def test_missing_file_listed_in_meta_is_named(tmp_path):
    root = imagenet_style_set(tmp_path / 'imagenet')
    (root / 'meta').mkdir()
    (root / 'meta' / 'train.txt').write_text('a/0.png 0\nb/7.png 1\n')
    with pytest.raises(FileNotFoundError) as error:
        check_dataset_config(imagenet_config(root), splits=('train', ))
    assert f"listed in {root / 'meta' / 'train.txt'} (1): {root / 'train' / 'b' / '7.png'}" in str(
        error.value)


@CLS
def test_label_beyond_the_classes_in_meta_is_named(tmp_path):
    root = imagenet_style_set(tmp_path / 'imagenet')
    (root / 'meta').mkdir()
    (root / 'meta' / 'train.txt').write_text('a/0.png 0\nb/1.png 2\n')
    with pytest.raises(
            ValueError, match=rf"outside \[0, 2\) \(2 classes\): {root}/train/b/1.png 2"):
        check_dataset_config(imagenet_config(root), splits=('train', ))


@DET
def test_splits_selects_the_data_loaders(tiny_sets):
    root = tiny_sets['det']
    assert check_dataset_config(
        det_config(root),
        splits=('test', )) == [f'test: CocoDataset {root}: 3 images (all checked)']
    with pytest.raises(ValueError, match=r"unknown splits \['tset'\]"):
        check_dataset_config(det_config(root), splits=('tset', ))


def edit_coco(root, edit):
    coco = json.loads((root / ANN).read_text())
    edit(coco)
    (root / ANN).write_text(json.dumps(coco))


@pytest.mark.parametrize('edit, reason', [
    (lambda coco: None, 'every image is smaller than min_size=200'),
    (lambda coco: coco.update(annotations=[]), 'the file has no annotations'),
    (lambda coco: coco.update(annotations=[a
                                           for a in coco['annotations'] if a['category_id'] != 1]),
     "no annotation is of the classes 0"),
])
@DET
def test_set_emptied_says_what_emptied_it(copy_set, edit, reason):
    root = copy_set('det')
    edit_coco(root, edit)
    min_size = 200 if 'min_size' in reason else 32
    config = det_config(
        root,
        filter_cfg=dict(filter_empty_gt=True, min_size=min_size),
        metainfo=dict(classes=('0', )))
    with pytest.raises(ValueError) as error:
        check_dataset_config(config, splits=('val', ))
    assert 'CocoDataset has no samples: filter_cfg=' in str(error.value)
    assert f'removed all 3 of {root / ANN}' in str(error.value) and reason in str(error.value)


@DET
def test_coco_box_outside_its_image_is_named(copy_set):
    root = copy_set('det')
    edit_coco(root, lambda coco: coco['annotations'][3].update(bbox=[150, 10, 30, 20]))
    with pytest.raises(
            ValueError,
            match=r'bbox is not \[x, y, width, height\] within their image '
            r'\(1\): 4 \[150, 10, 30, 20\] in 0+2\.jpg \(160x160\)'):
        check_dataset_config(det_config(root))


@DET
def test_coco_annotation_of_no_image_is_named(copy_set):
    root = copy_set('det')
    edit_coco(root, lambda coco: coco['annotations'][0].update(image_id=999))
    with pytest.raises(
            ValueError, match=r'image_id is no image of the file \(1\): 1 \(image_id 999\)'):
        check_dataset_config(det_config(root))


@DET
def test_coco_annotation_of_no_category_is_named(copy_set):
    root = copy_set('det')
    edit_coco(root, lambda coco: coco['annotations'][1].update(category_id=77))
    with pytest.raises(
            ValueError, match=r'category_id is no category of the file \(1\): 2 '
            r'\(category_id 77\)'):
        check_dataset_config(det_config(root))


@DET
def test_unknown_dataset_type_is_named(tiny_sets):
    with pytest.raises(ValueError, match="'CocoDatset' is not in the DATASETS registry of mmdet"):
        check_dataset_config(det_config(tiny_sets['det'], type='CocoDatset'))


class CreatesFile:
    """Unpickled, creates the file ``path``: the payload of a code-running pickle."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, 'w')


def payload_file(kind, path, marker):
    """Write at ``path`` a ``kind`` file ('pickle', 'yaml', 'npy') that creates ``marker`` when
    read as the toolboxes read it."""
    if kind == 'pickle':
        path.write_bytes(pickle.dumps(dict(metainfo={}, data_list=[CreatesFile(marker)])))
    elif kind == 'yaml':
        path.write_text(f'metainfo: {{}}\ndata_list: !!python/object/apply:builtins.open '
                        f'["{marker}", "w"]\n')
    else:
        np.save(path, np.array([CreatesFile(marker), 0], dtype=object), allow_pickle=True)
    return path


def benign_annotations():
    """An OpenMMLab 2.0 annotation dict of the training images of ``imagenet_style_set``, with
    numpy values."""
    return dict(
        metainfo=dict(classes=('a', 'b')),
        data_list=[
            dict(img_path=f'{label}/{i}.png', gt_label=np.int64(index), scores=np.ones(2))
            for index, label in enumerate('ab') for i in range(2)
        ])


def annotation_file_config(root, ann_file):
    """mmpretrain's ``BaseDataset`` of ``root/train``, which reads ``ann_file`` (an OpenMMLab 2.0
    annotation dict) with ``mmengine.load``."""
    dataset = dict(type='BaseDataset', data_root=str(root), ann_file=ann_file, data_prefix='train')
    return Config(dict(default_scope='mmpretrain', train_dataloader=dict(dataset=dataset)))


def openimages_challenge_config(root, hierarchy_file):
    """An mmdet ``OpenImagesChallengeDataset`` of no images that reads ``hierarchy_file``."""
    (root / 'labels.csv').write_text('/m/a,a,1\n')
    (root / 'ann.txt').write_text('')
    mmengine.dump([], root / 'meta.pkl')
    dataset = dict(
        type='OpenImagesChallengeDataset',
        data_root=str(root),
        ann_file='ann.txt',
        label_file='labels.csv',
        meta_file='meta.pkl',
        hierarchy_file=hierarchy_file,
        data_prefix=dict(img=''))
    return Config(dict(default_scope='mmdet', val_dataloader=dict(dataset=dataset)))


@pytest.mark.parametrize('kind, key, suffix', [
    pytest.param('pickle', 'ann_file', '.pkl', marks=CLS),
    pytest.param('yaml', 'ann_file', '.yaml', marks=CLS),
    pytest.param('pickle', 'proposal_file', '.pkl', marks=DET),
    pytest.param('npy', 'hierarchy_file', '.npy', marks=DET),
])
def test_code_running_data_files_are_refused_unread(tmp_path, copy_set, kind, key, suffix):
    marker = tmp_path / 'payload-ran'
    root = copy_set('det') if key == 'proposal_file' else imagenet_style_set(tmp_path / 'set')
    path = payload_file(kind, root / f'evil{suffix}', marker)
    if key == 'ann_file':
        config = annotation_file_config(root, path.name)
    elif key == 'proposal_file':  # mmdet's BaseDetDataset loads it with mmengine.load
        config = det_config(root, proposal_file=path.name)
    else:  # OpenImagesChallengeDataset loads it with np.load(allow_pickle=True)
        config = openimages_challenge_config(root, path.name)
    with pytest.raises(UnsafeDataFileError, match=str(path)) as error:
        check_dataset_config(config)
    assert not marker.exists()
    assert 'JSON' in str(error.value) and '\n' not in str(error.value)


@CLS
def test_annotation_pickle_of_builtins_and_numpy_is_read(tmp_path):
    root = imagenet_style_set(tmp_path / 'set')
    mmengine.dump(benign_annotations(), root / 'ann.pkl')
    assert check_dataset_config(annotation_file_config(
        root, 'ann.pkl')) == [f'train: BaseDataset {root}: 4 images (all checked)']


@pytest.mark.parametrize('classes', [('b', 'a'), ('a', 'c')])
@CLS
def test_class_folders_that_are_not_the_classes_are_refused(tmp_path, classes):
    root = imagenet_style_set(tmp_path / 'set')
    with pytest.raises(ValueError) as error:
        check_dataset_config(imagenet_config(root, metainfo=dict(classes=classes)))
    wrong = 'a/ gets label 0 (b), b/ gets label 1 (a)' if classes[
        0] == 'b' else 'b/ gets label 1 (c)'
    assert f'the class folders of {root / "train"} are not the classes' in str(error.value)
    assert f"sorted order, so {wrong}; rename the folders" in str(error.value)
    assert "set classes to the folders' sorted order (a, b)" in str(error.value)


@CLS
def test_class_folders_of_imagenet_with_its_own_classes_pass(tmp_path):
    # ImageNet's class names are not its folders' names (n01440764, ...): its own METAINFO is in
    # the folders' order by design, and only classes given in the config are compared.
    root = tmp_path / 'imagenet'
    for i in range(1000):
        (root / 'val' / f'n{i:08d}').mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / 'val' / 'n00000000' / '0.png')
    config = imagenet_config(root, split='val')
    del config.train_dataloader.dataset.metainfo
    assert check_dataset_config(
        config, splits=('train', )) == [f'train: ImageNet {root}: 1 images (all checked)']


def save_with_exif_orientation(path, orientation):
    image = Image.open(path)
    exif = Image.Exif()
    exif[0x0112] = orientation
    image.save(path, exif=exif.tobytes())


@pytest.mark.parametrize('change, size', [
    ('cropped', '256x120'),
    ('transposed', '128x256, transposed'),
    ('image turned by EXIF', '256x128, transposed'),
])
@SEG
def test_label_map_of_another_size_than_its_image_is_named(copy_set, change, size):
    root = copy_set('seg')
    label = first_label(root)
    image = root / 'leftImg8bit' / 'train' / 'digits' / label.name.replace(
        SEG_MAP_SUFFIX, IMG_SUFFIX)
    values = np.array(Image.open(label))
    if change == 'cropped':
        Image.fromarray(values[:120]).save(label)
    elif change == 'transposed':
        Image.fromarray(values.T.copy()).save(label)
    else:  # OpenCV, mmcv's decoder, applies the orientation: the image becomes 128x256
        save_with_exif_orientation(image, 6)
    with pytest.raises(ValueError) as error:
        check_dataset_config(seg_config(root))
    image_size = '128x256' if change == 'image turned by EXIF' else '256x128'
    assert (f'label maps of another size than their image (1): {label} ({size}) of {image} '
            f'({image_size}); a label map must have its image') in str(error.value)


@SEG
def test_segmentation_set_without_classes_is_refused(tiny_sets):
    with pytest.raises(ValueError, match=r'has no classes: set metainfo=dict\(classes='):
        check_dataset_config(seg_config(tiny_sets['seg'], metainfo=None))


@DET
def test_coco_box_of_negative_size_is_named(copy_set):
    root = copy_set('det')
    edit_coco(root, lambda coco: coco['annotations'][2].update(bbox=[100, 40, -30, 20]))
    with pytest.raises(
            ValueError,
            match=r'bbox has a negative width or height \(1\): 3 \[100, 40, -30, 20\]; '
            r'mmdet would drop them without a word. A COCO bbox is \[x, y, width, height\], not '
            r'\[x1, y1, x2, y2\]'):
        check_dataset_config(det_config(root))


@DET
def test_coco_annotation_of_no_area_is_named(copy_set):
    root = copy_set('det')
    edit_coco(root, lambda coco: coco['annotations'][4].update(area=0))
    with pytest.raises(ValueError, match=r'of no area \(1\): 5 \(area 0\); mmdet would drop'):
        check_dataset_config(det_config(root))


@DET
def test_coco_image_of_another_size_than_stated_is_named(copy_set):
    root = copy_set('det')
    edit_coco(root, lambda coco: coco['images'][1].update(width=320, height=240))
    with pytest.raises(ValueError) as error:
        check_dataset_config(det_config(root))
    assert (f"images whose size is not the one {root / ANN} states (1): "
            f"{root / 'val2017' / '000000000002.jpg'} (160x160, stated 320x240); set their "
            'width and height there') in str(error.value)


@pytest.mark.parametrize('key, index, edit, entry', [
    ('images', 1, lambda entry: entry.pop('file_name'), 'entry 1 (id 2) lacks file_name'),
    ('images', 0, lambda entry: entry.pop('id'), 'entry 0 lacks id'),
    ('images', 2, lambda entry: entry.update(width='160'), "entry 2 (id 3) has width '160'"),
    ('annotations', 3, lambda entry: entry.pop('area'), 'entry 3 (id 4) lacks area'),
    ('annotations', 0, lambda entry: [entry.pop(k) for k in
                                      ('image_id', 'bbox')], 'entry 0 (id 1) lacks image_id, bbox'),
    ('categories', 4, lambda entry: entry.pop('name'), 'entry 4 (id 5) lacks name'),
])
@DET
def test_coco_entry_lacking_a_field_is_named(copy_set, key, index, edit, entry):
    root = copy_set('det')
    edit_coco(root, lambda coco: edit(coco[key][index]))
    with pytest.raises(ValueError) as error:
        check_dataset_config(det_config(root))
    assert str(error.value).startswith(f'entries of "{key}" in {root / ANN} that cannot be read '
                                       f'(1): {entry}; each entry of "{key}" needs id, ')


@DET
def test_coco_entries_that_are_not_objects_are_named(copy_set):
    root = copy_set('det')
    edit_coco(root, lambda coco: coco['annotations'].append([1, 2, 3]))
    with pytest.raises(ValueError, match=r'entry 8 \(\[1, 2, 3\]\) is not an object'):
        check_dataset_config(det_config(root))
    edit_coco(root, lambda coco: coco.update(images={}))
    with pytest.raises(ValueError, match=r'"images" of .* is a dict; it must be a list'):
        check_dataset_config(det_config(root))


@pytest.mark.parametrize('key, field, edit, shared', [
    ('images', 'id', lambda coco: coco['images'][2].update(id=1), '1 (2 entries)'),
    ('annotations', 'id', lambda coco: coco['annotations'][5].update(id=2), '2 (2 entries)'),
    ('categories', 'name', lambda coco: coco['categories'][3].update(name='7'), '"7" (2 entries)'),
    ('images', 'file_name', lambda coco: coco['images'][1].update(file_name='000000000001.jpg'),
     '"000000000001.jpg" (2 entries)'),
])
@DET
def test_coco_entries_that_share_an_id_are_named(copy_set, key, field, edit, shared):
    # images of one id: pycocotools keeps the last, with the annotations of both
    root = copy_set('det')
    edit_coco(root, edit)
    with pytest.raises(ValueError) as error:
        check_dataset_config(det_config(root))
    assert f'entries of "{key}" in {root / ANN} that share their {field} (1): {shared}; give ' \
        f'each its own {field}' in str(error.value)


@DET
def test_coco_file_without_annotations_passes(copy_set):
    # as COCO's image_info_test-dev2017.json, read by a test set
    root = copy_set('det')
    edit_coco(root, lambda coco: coco.pop('annotations'))
    assert check_dataset_config(
        det_config(root),
        splits=('test', )) == [f'test: CocoDataset {root}: 3 images (all checked)']


@DET
def test_paths_of_the_wrong_kind_are_named(copy_set):
    root = copy_set('det')
    with pytest.raises(
            FileNotFoundError,
            match=f'annotation file {root}/annotations of the '
            'CocoDataset is a directory; set ann_file to the file in it'):
        check_dataset_config(det_config(root, ann_file='annotations'))
    with pytest.raises(
            FileNotFoundError,
            match=f'data_root {root / ANN} of the CocoDataset is a '
            'file, not a directory$'):
        check_dataset_config(det_config(root / ANN))


@pytest.mark.parametrize('line', ['b/0.png', 'b/0.png one', ''])
@CLS
def test_label_list_line_without_a_label_is_named(tmp_path, line):
    root = imagenet_style_set(tmp_path / 'set')
    (root / 'meta').mkdir()
    (root / 'meta' / 'train.txt').write_text(f'a/0.png 0\n{line}\nb/1.png 1\n')
    with pytest.raises(ValueError) as error:
        check_dataset_config(imagenet_config(root), splits=('train', ))
    assert (f"cannot load its samples from {root / 'meta' / 'train.txt'}: line 2 is {line!r}, not "
            "'PATH LABEL' (an image path, a space, an integer class index)") in str(error.value)


@CLS
def test_empty_annotation_file_is_named(tmp_path):
    root = imagenet_style_set(tmp_path / 'set')
    (root / 'ann.json').write_text('')
    with pytest.raises(
            ValueError,
            match=f'the BaseDataset of {root} cannot load its samples from {root / "ann.json"}: '
            'Expecting value'):
        check_dataset_config(annotation_file_config(root, 'ann.json'))


@pytest.mark.parametrize('config', [
    pytest.param(lambda root: det_config(root, metainfo=dict(classes='7')), marks=DET),
    pytest.param(lambda root: seg_config(root, metainfo=dict(classes='digit')), marks=SEG),
])
def test_classes_given_as_a_string_are_refused(tmp_path, config):
    # ('7') is the string '7', not a tuple: the toolboxes would take its letters for the classes
    with pytest.raises(
            ValueError,
            match=r"classes of the \w+ is the string '(7|digit)', which is "
            r"no file of class names; a tuple of one class needs a comma: "
            r"classes=\('(7|digit)', \)"):
        check_dataset_config(config(tmp_path))


@CLS
def test_classes_given_as_a_file_are_read(tmp_path):
    root = imagenet_style_set(tmp_path / 'set')
    (tmp_path / 'classes.txt').write_text('a\nb\n')
    config = imagenet_config(root, metainfo=dict(classes=str(tmp_path / 'classes.txt')))
    assert check_dataset_config(config, splits=('train', ))


@SEG
def test_label_map_saved_as_jpeg_is_refused(copy_set):
    root = copy_set('seg')
    label = first_label(root)
    Image.open(label).save(label, format='JPEG')
    with pytest.raises(ValueError, match=f'label maps saved as JPEG \\(1\\): {label}; .* as PNG'):
        check_dataset_config(seg_config(root))


@pytest.mark.parametrize('bbox', [['1', '1', '2', '3'], [10, 10, 20], None])
@DET
def test_coco_box_that_is_not_four_numbers_is_named(copy_set, bbox):
    root = copy_set('det')
    edit_coco(root, lambda coco: coco['annotations'][6].update(bbox=bbox))
    with pytest.raises(ValueError) as error:
        check_dataset_config(det_config(root))
    assert str(error.value) == (f'annotations of {root / ANN} whose bbox is not [x, y, width, '
                                f'height] (four numbers) (1): 7 {bbox!r}')
