"""Inference mode for deployment: BatchNorm folded into the convs, channels-last memory format.

BN is folded where it lives: every module with a ``switch_to_deploy()`` (XFormer, mmpretrain's
MobileOne or RepVGG) does it itself, so that ``backbone.deploy`` is True afterwards and its state
dict is that of ``deploy=True``; mmcv's ``fuse_conv_bn`` then folds the BN of the other modules
(a detector's neck and head, mmpretrain's MobileViT).

Neither changes what the network computes: outputs agree with the plain eval forward to float
rounding (about 1e-5; ``tests/test_deployment/test_inference_mode.py`` checks 1e-4). On a CPU,
channels-last is what oneDNN's convolutions run natively, so it saves a layout conversion around
every conv; folding BN saves a pass over every conv output. Measured speed-ups are in
``docs/benchmark.md``.

Nothing here is specific to XFormer: any model made of ``Conv2d`` + ``BatchNorm`` pairs
(mmpretrain's MobileViT and MobileNetV2 too) gets the same treatment, which keeps comparisons fair.

Example:
    >>> import torch
    >>> from mmxformer.deployment import deploy
    >>> from mmxformer.models import XFormer
    >>> model = deploy(XFormer('small', out_indices=(2, 3, 4)))
    >>> with torch.inference_mode():
    ...     outs = model(torch.rand(1, 3, 512, 512))
"""
import torch
import torch.nn as nn
from mmcv.cnn import fuse_conv_bn


def deploy(model: nn.Module, channels_last: bool = True) -> nn.Module:
    """Prepare ``model`` for inference, in place: eval mode, no gradients, each BatchNorm that
    directly follows a conv folded into it (``switch_to_deploy()`` where a module has one, else
    mmcv's ``fuse_conv_bn``), and the weights in channels-last, so that every conv, from the
    first one on, produces channels-last maps.

    Inputs may stay in the default (NCHW) format; run the model under ``torch.inference_mode()``.

    Args:
        model (nn.Module): The model; it is modified and returned.
        channels_last (bool): Convert the weights to channels-last. Defaults to True.

    Returns:
        nn.Module: ``model``, ready for inference; it cannot be trained any more (BN is gone).
    """
    model.eval()  # not chained: some backbones' train() returns None
    for module in list(model.modules()):
        if hasattr(module, 'switch_to_deploy'):
            module.switch_to_deploy()
    model.eval()  # a deployed module rebuilt its layers
    model.requires_grad_(False)
    fuse_conv_bn(model)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model
