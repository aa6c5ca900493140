"""The runtime form of a LayerNorm over the channels of tokens.

XNNPACK has no LayerNorm: exported as it is, every LayerNorm of the transformer runs in
ExecuTorch's portable kernels (one thread, no vectorisation) and splits the graph into one more
XNNPACK delegate. :class:`RuntimeLayerNorm` computes the same function with means over the two
innermost axes of a 4-D tensor, which XNNPACK runs.
"""
import torch
import torch.nn as nn


class RuntimeLayerNorm(nn.Module):
    """LayerNorm over the last axis, computed with ops XNNPACK has: the tokens (..., C) are
    viewed as (B, N, 1, C) so that both means are over the two innermost axes of a 4-D tensor.

    Args:
        norm (nn.LayerNorm): The LayerNorm to replace, over one axis, with its affine weights
            (shared, not copied).

    Raises:
        ValueError: ``norm`` normalises over more than one axis, or has no affine weights.
    """

    def __init__(self, norm: nn.LayerNorm):
        super().__init__()
        if not self.replaces(norm):
            raise ValueError(f'RuntimeLayerNorm replaces affine LayerNorms over the last axis, '
                             f'not {norm}')
        self.eps = norm.eps
        self.weight = norm.weight
        self.bias = norm.bias

    @staticmethod
    def replaces(module: nn.Module) -> bool:
        """Whether ``module`` is a LayerNorm this form computes: affine, over the last axis."""
        return (isinstance(module, nn.LayerNorm) and len(module.normalized_shape) == 1
                and module.elementwise_affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-2] if x.dim() > 2 else 1, 1, shape[-1])
        centred = x - x.mean((2, 3), keepdim=True)
        variance = (centred * centred).mean((2, 3), keepdim=True)
        y = centred * torch.rsqrt(variance + self.eps) * self.weight
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(shape)
