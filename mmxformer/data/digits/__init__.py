"""The real-data embedded defaults: scikit-learn's handwritten digits composited into detection
(COCO), segmentation (Cityscapes layout) and classification (folder) sets."""
from .classification import make_digits_cls
from .detection import make_digits_det
from .scenes import DIGIT_CLASSES, compose_scene, load_digit_sources
from .segmentation import IGNORE_INDEX, SEG_CLASSES, SEG_PALETTE, make_digits_seg

__all__ = [
    'DIGIT_CLASSES', 'IGNORE_INDEX', 'SEG_CLASSES', 'SEG_PALETTE', 'compose_scene',
    'load_digit_sources', 'make_digits_cls', 'make_digits_det', 'make_digits_seg'
]
