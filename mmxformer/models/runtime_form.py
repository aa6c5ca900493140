"""A whole model in its runtime form: each layer that has one replaced by it.

The runtime forms live with their layers (:meth:`CrossFeatureAttention.runtime_form`,
:class:`RuntimeLayerNorm`) and compute the same function as the training forms, in ops that
every runtime runs (XNNPACK has no LayerNorm, ``norm``, ``eye``, ``diagonal`` or ``split``); the
exporters and the benchmark call :func:`to_runtime_form` on every model alike.
"""
import copy

import torch.nn as nn

from .layers.cross_feature_attention import CrossFeatureAttention
from .layers.layer_norm import RuntimeLayerNorm


def runtime_form_of(module: nn.Module):
    """The runtime form of one module, or None where it keeps its own."""
    if isinstance(module, CrossFeatureAttention):
        return module.runtime_form()
    if RuntimeLayerNorm.replaces(module):
        return RuntimeLayerNorm(module)
    return None


def to_runtime_form(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in which every module with a runtime form is replaced by it. For
    inference: the copy's constants are built from the weights now.

    Returns:
        nn.Module: the copy.
    """
    model = copy.deepcopy(model)
    for name, module in list(model.named_modules()):
        replacement = runtime_form_of(module)
        if replacement is None:
            continue
        parent, _, child = name.rpartition('.')
        setattr(model.get_submodule(parent) if parent else model, child, replacement)
    return model
