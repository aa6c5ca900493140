"""Parameters and FLOPs of a whole model (backbone, neck, head)."""
import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer
from mmengine.analysis.jit_handles import bmm_flop_jit


class TensorMode(nn.Module):
    """``model(inputs, mode='tensor')``: the network without pre-processing or post-processing
    (no NMS, no resizing of logits), as mmdet's and mmseg's get_flops count it."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, inputs):
        return self.model(inputs, mode='tensor')


def complexity(model, shape):
    """``(parameters, flops)`` of ``model`` for one image of ``shape`` = (H, W).

    FLOPs follow fvcore's and OpenMMLab's get_flops convention: one multiply-add counts as one
    FLOP; convolutions, linear layers and matrix products are counted, element-wise operations and
    normalisations are not.
    """
    analyzer = FlopAnalyzer(TensorMode(model), (torch.rand(1, 3, *shape), ))
    analyzer.set_op_handle('aten::baddbmm', lambda inputs, outputs: bmm_flop_jit(
        inputs[1:3], outputs))
    analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    with torch.no_grad():
        flops = analyzer.total()
    return sum(p.numel() for p in model.parameters()), flops
