"""The digit segmentation set as an mmseg dataset class, for the configs of
``configs/xformer_mlp-decoder_digits.py`` (which import this module through ``custom_imports``).

mmseg's ``CityscapesDataset`` accepts only Cityscapes' 19 classes, and ``BaseSegDataset`` has no
class names of its own: tools that read a dataset class's ``METAINFO`` rather than the built
set's ``metainfo`` (mmseg's ``tools/misc/browse_dataset.py``) find none there. This class has
the set's classes, palette and file suffixes.
"""
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

from .segmentation import IMG_SUFFIX, SEG_CLASSES, SEG_MAP_SUFFIX, SEG_PALETTE


@DATASETS.register_module()
class DigitsSegDataset(BaseSegDataset):
    """The set written by ``tools/misc/make_digits.py seg`` (Cityscapes layout).

    Args:
        img_suffix (str): Defaults to ``'_leftImg8bit.png'``.
        seg_map_suffix (str): Defaults to ``'_gtFine_labelTrainIds.png'``.
        **kwargs: The other arguments of mmseg's ``BaseSegDataset``.
    """
    METAINFO = dict(classes=SEG_CLASSES, palette=SEG_PALETTE)

    def __init__(self, img_suffix=IMG_SUFFIX, seg_map_suffix=SEG_MAP_SUFFIX, **kwargs) -> None:
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, **kwargs)
