"""The real-data embedded defaults: scikit-learn's handwritten digits composited into detection
(COCO), segmentation (Cityscapes layout) and classification (folder) sets, and a preflight check
of a config's datasets."""
from .checks import check_dataset_config
from .digits import DIGIT_CLASSES, compose_scene, load_digit_sources
from .digits_cls import make_digits_cls
from .digits_det import make_digits_det
from .digits_seg import IGNORE_INDEX, SEG_CLASSES, SEG_PALETTE, make_digits_seg

__all__ = [
    'DIGIT_CLASSES', 'IGNORE_INDEX', 'SEG_CLASSES', 'SEG_PALETTE', 'check_dataset_config',
    'compose_scene', 'load_digit_sources', 'make_digits_cls', 'make_digits_det', 'make_digits_seg'
]
