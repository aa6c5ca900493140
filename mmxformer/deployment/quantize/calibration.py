"""Calibration images, and how an int8 network agrees with its float32 original.

Calibration images are the first images of the config's training set, read through its test
pipeline (no augmentation) and built through its toolbox, their batches through the model's data
preprocessor (the exported graph's input is that preprocessor's output), each image resized
bilinearly to the export shape. The agreement of the int8 network with the fp32 one is measured
on the test set, which calibration never sees.
"""
from typing import Callable, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ...data.splits import split_loader_cfg
from ...tasks import TensorModel
from ...utils.config import toolbox_of


def check_split(cfg, split: str, purpose: str) -> None:
    """Raise unless the config has a dataloader with a dataset for a split, as
    :func:`~mmxformer.data.splits.split_loader_cfg` reads it: 'train' its ``train_dataloader``,
    'test' its ``test_dataloader`` or else ``val_dataloader``.

    Args:
        cfg (mmengine.Config): The config.
        split (str): 'train' or 'test'.
        purpose (str): What the split is read for, to end the message with.

    Raises:
        ValueError: Names the missing dataloader.
    """
    keys = ['train_dataloader'] if split == 'train' else ['test_dataloader', 'val_dataloader']
    loader = next((cfg.get(key) for key in keys if cfg.get(key)), None)
    if not isinstance(loader, dict) or not loader.get('dataset'):
        raise ValueError(f'{cfg.filename} has no {" nor ".join(keys)} with a dataset: {purpose}')


def calibration_inputs(cfg,
                       preprocessor: torch.nn.Module,
                       num_images: int,
                       shape: Tuple[int, int],
                       split: str = 'train') -> List[torch.Tensor]:
    """``num_images`` inputs of the exported graph, (1, 3, H, W) each, from a split of the
    config's dataset.

    Args:
        cfg (mmengine.Config): The config; the split's dataloader is built with its toolbox's
            registries, without workers (see :func:`~mmxformer.data.splits.split_loader_cfg`).
        preprocessor (nn.Module): The model's data preprocessor (``network.model
            .data_preprocessor`` of :func:`~..export.network.build_network`).
        num_images (int): How many images (the first ones of the split, in its order).
        shape (tuple[int, int]): Height and width the preprocessed images are resized to.
        split (str): 'train' (calibration) or 'test' (measuring the agreement). Defaults to
            'train'.

    Returns:
        list[torch.Tensor]: the inputs.

    Raises:
        ValueError: the config has no such split, or it has fewer than ``num_images`` images.
    """
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    if num_images < 1:
        raise ValueError(f'Calibrate on at least one image, not {num_images}')
    check_split(cfg, split, 'int8 is calibrated on the training set, and measured on the test set')
    init_default_scope(toolbox_of(cfg))
    loader = Runner.build_dataloader(split_loader_cfg(cfg, split))
    images = []
    for data in loader:
        with torch.no_grad():
            inputs = preprocessor(data, False)['inputs']
        for image in inputs:
            images.append(
                F.interpolate(
                    image[None].float(), size=tuple(shape), mode='bilinear', align_corners=False))
            if len(images) == num_images:
                return images
    raise ValueError(f'{num_images} images of the {split} set of {cfg.filename} asked for, but '
                     f'it has {len(images)}; ask for fewer (--calib-images)')


def agreement(network: TensorModel, run_int8: Callable[[torch.Tensor], Sequence],
              inputs: Sequence[torch.Tensor]) -> dict:
    """How the int8 network's outputs agree with the float32 network's on ``inputs``.

    Args:
        network (TensorModel): The float32 network, with its toolbox adapter.
        run_int8 (callable): Input -> list of output tensors of the int8 network.
        inputs (list[torch.Tensor]): Images, (1, 3, H, W) each.

    Returns:
        dict: ``images``, ``sqnr_db`` (signal-to-quantization-noise ratio of all outputs:
        10·log10(Σ fp32² / Σ (int8 - fp32)²)) and the fraction of the adapter's
        ``output_agreement`` (a classifier's ``top1_agreement``, a segmentor's
        ``pixel_agreement``, a detector's ``objectness_agreement``), all in [0, 1].
    """
    signal = noise = 0.
    same = total = 0
    for x in inputs:
        with torch.no_grad():
            want = [t.float() for t in network(x)]
        got = [torch.as_tensor(t).float() for t in run_int8(x)]
        for w, g in zip(want, got):
            signal += float((w * w).sum())
            noise += float(((g - w)**2).sum())
        agreeing, count = network.task.output_agreement(network.model, want, got)
        same += agreeing
        total += count
    return {
        'images': len(inputs),
        network.task.output_agreement_key: same / max(total, 1),
        'sqnr_db': float(10 * np.log10(signal / noise)) if noise else float('inf')
    }
