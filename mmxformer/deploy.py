"""Inference mode for deployment: BatchNorm folded into the convs, channels-last memory format.

Neither changes what the network computes: outputs agree with the plain eval forward to float
rounding (about 1e-5; ``tests/test_deploy.py`` checks 1e-4). On a CPU, channels-last is what
oneDNN's convolutions run natively, so it saves a layout conversion around every conv; folding BN
saves a pass over every conv output. Measured speed-ups are in ``docs/benchmark.md``.

Nothing here is specific to XFormer: any model made of ``Conv2d`` + ``BatchNorm`` pairs
(mmpretrain's MobileViT and MobileNetV2 too) gets the same treatment, which keeps comparisons fair.

Example:
    >>> import torch
    >>> from mmxformer.deploy import deploy
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


def keep_freed_memory(threshold=2**30):
    """Make glibc keep freed memory for reuse instead of returning it to the system. Process-wide.

    By default glibc serves every allocation above 32 MiB (the largest activations of a backbone
    at 1024² and above) with a fresh ``mmap``, which the kernel zero-fills page by page on first
    touch, and gives it back on ``free``: every forward pass pays those page faults again, which
    makes large inputs cost more than their pixel count. With this, such allocations come from the heap
    and freed memory stays there; the resident set stays at its peak in exchange.

    Args:
        threshold (int): Allocations up to this many bytes come from the heap. Defaults to 1 GiB.

    Raises:
        OSError: if the C library is not glibc (Linux) or refuses the setting.
    """
    import ctypes
    libc = ctypes.CDLL('libc.so.6')
    m_trim_threshold, m_mmap_threshold = -1, -3
    if not (libc.mallopt(m_mmap_threshold, threshold)
            and libc.mallopt(m_trim_threshold, 2**31 - 1)):
        raise OSError('glibc refused mallopt(M_MMAP_THRESHOLD / M_TRIM_THRESHOLD)')
