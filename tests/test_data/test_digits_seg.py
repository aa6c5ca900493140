import cv2
import numpy as np
import pytest

from mmxformer.data.digits import SEG_CLASSES, SEG_PALETTE, make_digits_seg, segmentation
from mmxformer.data.digits.scenes import DigitSources, load_digit_sources
from mmxformer.data.digits.segmentation import IMG_SUFFIX, SEG_MAP_SUFFIX

SUFFIXES = dict(img_suffix=IMG_SUFFIX, seg_map_suffix=SEG_MAP_SUFFIX)


def label_files(root, split):
    return sorted((root / 'gtFine' / split / 'digits').glob(f'*{SEG_MAP_SUFFIX}'))


def test_layout_and_label_values(tiny_sets):
    root = tiny_sets['seg']
    assert len(SEG_CLASSES) == len(SEG_PALETTE) == 11 and SEG_CLASSES[0] == 'background'
    assert len({tuple(colour) for colour in SEG_PALETTE}) == 11
    for split, count in (('train', 4), ('val', 2)):
        labels = label_files(root, split)
        assert len(labels) == count
        for label_path in labels:
            name = label_path.name[:-len(SEG_MAP_SUFFIX)]
            image = cv2.imread(str(root / 'leftImg8bit' / split / 'digits' / f'{name}{IMG_SUFFIX}'))
            label = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
            assert image.shape == (128, 256, 3)
            assert label.shape == (128, 256) and label.dtype == np.uint8
            values = set(np.unique(label).tolist())
            assert values <= set(range(11)) | {255}
            assert 0 in values and values & set(range(1, 11)) and 255 in values


def _pipeline():
    from mmcv.transforms import LoadImageFromFile
    from mmseg.datasets.transforms import LoadAnnotations
    return [LoadImageFromFile(), LoadAnnotations()]


def _prefix(split):
    return dict(img_path=f'leftImg8bit/{split}', seg_map_path=f'gtFine/{split}')


@pytest.mark.needs('mmseg')
def test_loads_with_mmseg_base_dataset_and_digit_classes(tiny_sets):
    from mmseg.datasets import BaseSegDataset
    root = tiny_sets['seg']
    dataset = BaseSegDataset(
        data_root=str(root),
        data_prefix=_prefix('val'),
        metainfo=dict(classes=SEG_CLASSES, palette=SEG_PALETTE),
        pipeline=_pipeline(),
        **SUFFIXES)
    assert len(dataset) == 2
    assert dataset.metainfo['classes'] == SEG_CLASSES
    sample = dataset[0]
    expected = cv2.imread(str(label_files(root, 'val')[0]), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(sample['gt_seg_map'], expected)
    assert sample['img'].shape == (128, 256, 3)


@pytest.mark.needs('mmseg')
def test_loads_with_mmseg_cityscapes_dataset(tiny_sets):
    # The layout and suffixes are Cityscapes'; only its class names differ (so a config uses
    # BaseSegDataset to rename them).
    from mmseg.datasets import CityscapesDataset
    dataset = CityscapesDataset(
        data_root=str(tiny_sets['seg']), data_prefix=_prefix('train'), pipeline=_pipeline())
    assert len(dataset) == 4
    assert dataset[3]['gt_seg_map'].shape == (128, 256)


def test_rims_are_optional(tmp_path):
    root = make_digits_seg(tmp_path / 'seg', num_train=2, num_val=1, ignore_rims=False)
    for label_path in label_files(root, 'train'):
        assert 255 not in cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)


def test_val_shows_held_out_digits_only(tmp_path, monkeypatch):
    real = load_digit_sources()
    fake = DigitSources(real.train_images, np.zeros_like(real.train_labels), real.held_out_images,
                        np.full_like(real.held_out_labels, 9))
    monkeypatch.setattr(segmentation, 'load_digit_sources', lambda: fake)
    root = make_digits_seg(tmp_path / 'seg', num_train=2, num_val=2)
    for split, digit_id in (('train', 1), ('val', 10)):
        values = set()
        for label_path in label_files(root, split):
            values |= set(np.unique(cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)).tolist())
        assert values == {0, digit_id, 255}
