"""What differs between mmpretrain, mmdet and mmseg, in one adapter per toolbox.

Every exporter, the quantizer, the evaluation of exported files, the mmdeploy check, the test
tool's options and the complexity count ask the config's adapter (:func:`task_of`) instead of
the toolbox's name, as mmdeploy's task processors do for its codebases.
"""
from ..registry import TASKS
from ..utils.config import toolbox_of
from .base import Task
from .classification import ClassificationTask
from .detection import DetectionTask
from .segmentation import SegmentationTask
from .tensor_model import TensorModel, flatten


def task_of(cfg) -> Task:
    """The adapter of a config's toolbox (its ``default_scope``).

    Raises:
        ValueError: The config's ``default_scope`` is not a toolbox mmxformer knows.
    """
    return TASKS.get(toolbox_of(cfg))()


__all__ = [
    'ClassificationTask', 'DetectionTask', 'SegmentationTask', 'Task', 'TensorModel', 'flatten',
    'task_of'
]
