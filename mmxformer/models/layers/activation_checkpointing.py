"""Gradient (activation) checkpointing of a block, as ``with_cp`` asks."""
import torch.utils.checkpoint as cp


def checkpointed(module, x, with_cp):
    """``module(x)``, recomputed in the backward pass when ``with_cp`` and gradients flow."""
    if with_cp and x.requires_grad:
        return cp.checkpoint(module, x, use_reentrant=False)
    return module(x)
