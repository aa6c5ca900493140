import json

import numpy as np
import pytest
from mmengine import Config
from PIL import Image

from mmxformer.data.checks import check_dataset_config
from mmxformer.data.digits import DIGIT_CLASSES, SEG_CLASSES, SEG_PALETTE
from mmxformer.data.digits.segmentation import IMG_SUFFIX, SEG_MAP_SUFFIX

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
