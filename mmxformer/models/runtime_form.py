"""A whole model in its runtime form: each layer that has one replaced by it.

The runtime forms live with their layers (:meth:`CrossFeatureAttention.runtime_form`,
:class:`RuntimeLayerNorm`, the folding of :class:`TokenBatchNorm` norms by ``fold_norms``) and
compute the same function as the training forms, in ops that every runtime runs (XNNPACK has no
LayerNorm, ``norm``, ``eye``, ``diagonal`` or ``split``) and with no norm left that folds; the
exporters and the benchmark call :func:`to_runtime_form` on every model alike.
"""
import copy

import torch.nn as nn

from .layers.cross_feature_attention import CrossFeatureAttention
from .layers.layer_norm import RuntimeLayerNorm
from .layers.transformer_layer import TransformerLayer
from .layers.xf_block import XFBlock


def runtime_form_of(module: nn.Module):
    """The runtime form of one module, or None where it keeps its own."""
    if isinstance(module, CrossFeatureAttention):
        return module.runtime_form()
    if RuntimeLayerNorm.replaces(module):
        return RuntimeLayerNorm(module)
    return None


def fold_token_norms(model: nn.Module) -> None:
    """Fold every :class:`TokenBatchNorm` of ``model``'s transformers into the linear layer that
    reads its output, in place (``fold_norms`` of :class:`TransformerLayer` and
    :class:`XFBlock`); for inference."""
    for module in model.modules():
        if isinstance(module, (TransformerLayer, XFBlock)):
            module.fold_norms()


def to_runtime_form(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in which every module with a runtime form is replaced by it. For
    inference: the copy's constants are built from the weights now.

    Returns:
        nn.Module: the copy.
    """
    model = copy.deepcopy(model)
    fold_token_norms(model)  # first: the runtime forms share the layers they fold into
    for name, module in list(model.named_modules()):
        replacement = runtime_form_of(module)
        if replacement is None:
            continue
        parent, _, child = name.rpartition('.')
        setattr(model.get_submodule(parent) if parent else model, child, replacement)
    return model
