import json

import numpy as np
import pytest

from mmxformer.data.digits import DIGIT_CLASSES, detection, make_digits_det
from mmxformer.data.digits.scenes import DigitSources, load_digit_sources

ANN = 'annotations/instances_{}2017.json'


def test_layout_and_coco_fields(tiny_sets):
    root = tiny_sets['det']
    for split, count in (('train', 6), ('val', 3)):
        coco = json.loads((root / ANN.format(split)).read_text())
        assert [c['name'] for c in coco['categories']] == list(DIGIT_CLASSES)
        assert [c['id'] for c in coco['categories']] == list(range(1, 11))
        assert len(coco['images']) == count
        for image in coco['images']:
            assert (root / f'{split}2017' / image['file_name']).is_file()
            assert (image['width'], image['height']) == (160, 160)
        for ann in coco['annotations']:
            x, y, w, h = ann['bbox']
            assert ann['iscrowd'] == 0 and ann['area'] == w * h > 0
            assert 0 <= x and x + w <= 160 and 0 <= y and y + h <= 160
            assert 1 <= ann['category_id'] <= 10
        per_image = np.bincount([a['image_id'] for a in coco['annotations']], minlength=count + 1)
        assert per_image[1:].min() >= 1 and per_image.max() <= 4


@pytest.mark.needs('mmdet')
def test_loads_with_pycocotools_and_mmdet(tiny_sets):
    from mmcv.transforms import LoadImageFromFile
    from mmdet.datasets import CocoDataset
    from mmdet.datasets.transforms import LoadAnnotations
    from pycocotools.coco import COCO

    root = tiny_sets['det']
    coco = COCO(str(root / ANN.format('val')))
    assert len(coco.getImgIds()) == 3 and coco.getCatIds(catNms=['7']) == [8]
    dataset = CocoDataset(
        data_root=str(root),
        ann_file=ANN.format('train'),
        data_prefix=dict(img='train2017/'),
        metainfo=dict(classes=DIGIT_CLASSES),
        pipeline=[LoadImageFromFile(), LoadAnnotations(with_bbox=True)])
    assert len(dataset) == 6
    sample = dataset[0]
    assert sample['img'].shape == (160, 160, 3)
    anns = coco_anns(root / ANN.format('train'), image_id=1)
    assert sample['gt_bboxes_labels'].tolist() == [a['category_id'] - 1 for a in anns]
    xywh = [a['bbox'] for a in anns]
    assert sample['gt_bboxes'].tensor.tolist() == [[x, y, x + w, y + h] for x, y, w, h in xywh]


def coco_anns(path, image_id):
    return [a for a in json.loads(path.read_text())['annotations'] if a['image_id'] == image_id]


def test_same_seed_same_json_other_seed_other_json(tiny_sets, tmp_path):
    again = make_digits_det(tmp_path / 'again', num_train=6, num_val=3)
    other = make_digits_det(tmp_path / 'other', num_train=6, num_val=3, seed=1)
    for split in ('train', 'val'):
        original = (tiny_sets['det'] / ANN.format(split)).read_bytes()
        assert (again / ANN.format(split)).read_bytes() == original
        assert (other / ANN.format(split)).read_bytes() != original


def test_val_shows_held_out_digits_only(tmp_path, monkeypatch):
    # Training bitmaps all labelled 0, held-out ones 9: the category ids tell the pools apart.
    real = load_digit_sources()
    fake = DigitSources(real.train_images, np.zeros_like(real.train_labels), real.held_out_images,
                        np.full_like(real.held_out_labels, 9))
    monkeypatch.setattr(detection, 'load_digit_sources', lambda: fake)
    root = make_digits_det(tmp_path / 'det', num_train=3, num_val=3)
    for split, category in (('train', 1), ('val', 10)):
        anns = json.loads((root / ANN.format(split)).read_text())['annotations']
        assert anns and {a['category_id'] for a in anns} == {category}


@pytest.mark.parametrize(
    'kwargs',
    [dict(num_train=0),
     dict(num_val=-1),
     dict(seed=-1), dict(digit_size=(28, 200))])
def test_bad_arguments_write_nothing(tmp_path, kwargs):
    with pytest.raises(ValueError):
        make_digits_det(tmp_path / 'det', **kwargs)
    assert list(tmp_path.iterdir()) == []
