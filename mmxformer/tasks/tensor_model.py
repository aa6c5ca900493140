"""The network of a model, without pre-processing or post-processing, as one module."""
from typing import List, Optional, Tuple

import torch
import torch.nn as nn

from .base import Task


def flatten(outputs) -> List[torch.Tensor]:
    """The tensors of nested tuples and lists, in order."""
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    return [tensor for item in outputs for tensor in flatten(item)]


class TensorModel(nn.Module):
    """What the exporters, the complexity count and the benchmark run: ``model(inputs,
    mode='tensor')`` with the outputs as a flat tuple of tensors.

    Args:
        model (nn.Module): An mmpretrain, mmdet or mmseg model, or a bare backbone.
        task (Task, optional): The model's toolbox adapter; None for a backbone, which is
            called as it is.
        exported (bool): The outputs as the exporters write them (a segmentor's logits at the
            input size); False: as the toolboxes' ``get_flops`` count them. Defaults to True.
    """

    def __init__(self, model: nn.Module, task: Optional[Task] = None, exported: bool = True):
        super().__init__()
        self.model = model
        self.task = task
        self.exported = exported

    def forward(self, inputs: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        if self.task is None:
            return tuple(flatten(self.model(inputs)))
        return tuple(flatten(self.task.tensor_outputs(self.model, inputs, self.exported)))
