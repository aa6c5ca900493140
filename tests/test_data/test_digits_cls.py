import numpy as np
import pytest

from mmxformer.data.digits import DIGIT_CLASSES, classification, make_digits_cls
from mmxformer.data.digits.scenes import DigitSources, load_digit_sources


def test_layout(tiny_sets):
    root = tiny_sets['cls']
    for split, count in (('train', 20), ('test', 10)):
        assert sorted(p.name for p in (root / split).iterdir()) == list(DIGIT_CLASSES)
        assert len(list((root / split).glob('*/*.png'))) == count


@pytest.mark.needs('mmpretrain')
def test_loads_with_mmpretrain_custom_dataset(tiny_sets):
    from mmcv.transforms import LoadImageFromFile
    from mmpretrain.datasets import CustomDataset
    dataset = CustomDataset(
        data_root=str(tiny_sets['cls']), data_prefix='train', pipeline=[LoadImageFromFile()])
    assert len(dataset) == 20
    assert dataset.metainfo['classes'] == DIGIT_CLASSES
    for index in range(len(dataset)):
        info = dataset.get_data_info(index)
        assert info['img_path'].split('/')[-2] == DIGIT_CLASSES[info['gt_label']]
    assert dataset[0]['img'].shape == (32, 32, 3)


def test_default_test_split_is_every_held_out_digit_once(tmp_path):
    root = make_digits_cls(tmp_path / 'cls', num_train=1)
    counts = [len(list((root / 'test' / name).glob('*.png'))) for name in DIGIT_CLASSES]
    assert counts == np.bincount(load_digit_sources().held_out_labels).tolist()


def test_test_shows_held_out_digits_only(tmp_path, monkeypatch):
    real = load_digit_sources()
    fake = DigitSources(real.train_images, np.zeros_like(real.train_labels), real.held_out_images,
                        np.full_like(real.held_out_labels, 9))
    monkeypatch.setattr(classification, 'load_digit_sources', lambda: fake)
    root = make_digits_cls(tmp_path / 'cls', num_train=3, num_test=3)
    assert len(list((root / 'train' / '0').glob('*.png'))) == 3
    assert len(list((root / 'test' / '9').glob('*.png'))) == 3
