"""Mixed precision on the CPU: mmengine's ``AmpOptimWrapper`` only runs on CUDA, NPU and MLU."""
from contextlib import contextmanager

import torch
from mmengine.optim import OptimWrapper

from mmxformer.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class CPUBF16OptimWrapper(OptimWrapper):
    """``OptimWrapper`` that runs the forward pass under ``torch.autocast('cpu', bfloat16)``.

    bfloat16 has float32's exponent range, so no loss scaling is needed; parameters, gradients
    and the optimizer state stay float32.
    """

    @contextmanager
    def optim_context(self, model):
        with super().optim_context(model), torch.autocast('cpu', dtype=torch.bfloat16):
            yield
