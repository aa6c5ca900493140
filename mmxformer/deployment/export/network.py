"""What every exporter exports: a config's network with its weights, and how a check fails.

The network is :class:`~mmxformer.tasks.TensorModel` of the config's model (``mode='tensor'``,
the outputs as a flat tuple, a segmentor's logits at the input size), in eval mode with plain
BatchNorm. Its input is what the model's data preprocessor produces, which the exported files
record; the preprocessor is built with the model, so that calibration reads images through it.
"""
import os.path as osp
from typing import Optional, Sequence

import torch
from mmengine.model import revert_sync_batchnorm

from ...checkpoint.state_dict import load_pretrained
from ...tasks import TensorModel, task_of
from ...utils.config import build_model, with_model_preprocessor

#: fp32: largest absolute difference allowed between a runtime's outputs and PyTorch's.
TOLERANCE = 1e-4


class ExportCheckError(RuntimeError):
    """The exported file does not compute what the PyTorch model computes, or it needs ops
    outside what its runtime runs everywhere."""


def build_network(cfg, checkpoint: Optional[str] = None) -> TensorModel:
    """The exportable network of a config, in eval mode, with SyncBN turned back into BN.

    Args:
        cfg (mmengine.Config): An mmpretrain, mmdet or mmseg config.
        checkpoint (str, optional): Weights to load, read once; every weight of the model must
            be in it, with its shape. Defaults to None: the config's initialisation, enough to
            check that the graph is right.

    Returns:
        TensorModel: the network; ``network.model`` is the whole model, with its data
        preprocessor, and ``network.task`` the config's toolbox adapter.

    Raises:
        ValueError: ``checkpoint`` is a local path (no ``scheme://``) where there is no file,
            or a checkpoint that does not fit the model.
    """
    if checkpoint is not None and '://' not in checkpoint and not osp.isfile(checkpoint):
        raise ValueError(f'{checkpoint}: no such checkpoint file')
    model = revert_sync_batchnorm(build_model(with_model_preprocessor(cfg)))
    if checkpoint is not None:
        load_pretrained(model, checkpoint)  # every weight present, with its shape
    # the whole network in eval mode: an exporter that restores the mode it found afterwards
    # (torch.onnx.export) would otherwise put the model into training mode
    return TensorModel(model, task_of(cfg)).eval()


def random_input(shape: Sequence[int], seed: int) -> torch.Tensor:
    """A reproducible standard normal input of ``shape``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(tuple(shape), generator=generator)
