"""Parameters and FLOPs of a whole model (backbone, neck, head)."""
from typing import Tuple

import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer

from ..tasks import Task, TensorModel


def complexity(model: nn.Module, shape: Tuple[int, int], task: Task) -> Tuple[int, int]:
    """``(parameters, flops)`` of ``model`` for one image of ``shape`` = (H, W): the network
    without pre-processing or post-processing (``mode='tensor'``: no NMS, no resizing of
    logits), as mmdet's and mmseg's get_flops count it. ``task``: the model's toolbox adapter
    (:func:`mmxformer.tasks.task_of`).

    FLOPs follow fvcore's and OpenMMLab's get_flops convention: one multiply-add counts as one
    FLOP; convolutions, linear layers and matrix products are counted, element-wise operations and
    normalisations are not.
    """
    analyzer = FlopAnalyzer(TensorModel(model, task, exported=False), (torch.rand(1, 3, *shape), ))
    analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    with torch.no_grad():
        flops = analyzer.total()
    return sum(p.numel() for p in model.parameters()), flops
