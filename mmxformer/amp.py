"""Mixed precision on the CPU: mmengine's ``AmpOptimWrapper`` only runs on CUDA, NPU and MLU."""
from contextlib import contextmanager

import torch
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module(force=True)
class CPUBF16OptimWrapper(OptimWrapper):
    """``OptimWrapper`` that runs the forward pass under ``torch.autocast('cpu', bfloat16)``.

    bfloat16 has float32's exponent range, so no loss scaling is needed; parameters, gradients
    and the optimizer state stay float32.
    """

    @contextmanager
    def optim_context(self, model):
        with super().optim_context(model), torch.autocast('cpu', dtype=torch.bfloat16):
            yield


def amp_optim_wrapper(optim_wrapper):
    """The ``optim_wrapper`` config with mixed precision turned on for the available device:
    fp16 with a dynamic loss scale on CUDA (mmengine's ``AmpOptimWrapper``), bf16 on the CPU."""
    optim_wrapper = dict(optim_wrapper)
    if optim_wrapper.get('type', 'OptimWrapper') not in ('OptimWrapper', 'AmpOptimWrapper',
                                                         'CPUBF16OptimWrapper'):
        raise ValueError(f"--amp needs optim_wrapper.type 'OptimWrapper', got "
                         f"{optim_wrapper['type']!r}")
    if torch.cuda.is_available():
        optim_wrapper.update(type='AmpOptimWrapper', loss_scale='dynamic')
    else:
        optim_wrapper.update(type='CPUBF16OptimWrapper')
    return optim_wrapper
