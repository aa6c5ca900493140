"""Inference mode for deployment: BatchNorm folded into the convs, channels-last memory format.

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
from mmcv.cnn import fuse_conv_bn


def deploy(model, channels_last=True):
    """Prepare ``model`` for inference, in place: eval mode, no gradients, each BatchNorm that
    directly follows a conv folded into it (mmcv's ``fuse_conv_bn``), and the weights in
    channels-last, so that every conv, from the first one on, produces channels-last maps.

    Inputs may stay in the default (NCHW) format; run the model under ``torch.inference_mode()``.

    Args:
        model (nn.Module): The model; it is modified and returned.
        channels_last (bool): Convert the weights to channels-last. Defaults to True.

    Returns:
        nn.Module: ``model``, ready for inference; it cannot be trained any more (BN is gone).
    """
    model.eval()  # not chained: some backbones' train() returns None
    model.requires_grad_(False)
    fuse_conv_bn(model)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model
