"""int8 post-training quantization for ExecuTorch (XNNPACK) and ONNX Runtime, calibrated on
images of the config's own dataset.

- Calibration images: the first images of the config's training set, read through its test
  pipeline (no augmentation) and built through its toolbox, their batches through the model's
  data preprocessor (the exported graph's input is that preprocessor's output), each image
  resized bilinearly to the export shape. The agreement of the int8 model with the fp32 one is
  measured on the test set, which calibration never sees.
- ExecuTorch: PT2E (``torchao.quantization.pt2e.prepare_pt2e``/``convert_pt2e``) with
  ExecuTorch's ``XNNPACKQuantizer`` as :mod:`.xnnpack_quantizer` sets it up: int8 weights
  symmetric per output channel, int8 activations per tensor (histogram observers), the
  transformer's LayerNorms and XFA in float32.
- ONNX: onnxruntime's ``quantize_static``, QDQ format, int8 weights per channel, uint8
  activations (MinMax calibration), on the same images.
"""
import copy

import numpy as np
import torch
import torch.nn.functional as F

from .onnx_export import _flatten

#: int8 check: largest absolute difference between ExecuTorch's int8 kernels and PyTorch running
#: the same quantized graph, as a fraction of the output's largest magnitude: both requantize
#: every layer, and their roundings may differ by a step, which the following layers carry on.
INT8_TOLERANCE = 0.1


def split_loader_cfg(cfg, split):
    """The dataloader config of a split of the config's dataset, read through the test pipeline.

    Args:
        cfg (mmengine.Config): The config.
        split (str): 'train' (its ``train_dataloader``, not shuffled; the innermost dataset of
            a wrapper such as mmdet's ``RepeatDataset`` gets the test pipeline, so that no
            augmentation runs) or 'test' (its ``test_dataloader``, else ``val_dataloader``).

    Returns:
        dict: the dataloader config, without workers.
    """
    test_cfg = copy.deepcopy(dict(cfg.get('test_dataloader') or cfg.val_dataloader))
    loader_cfg = test_cfg
    if split == 'train':
        loader_cfg = copy.deepcopy(dict(cfg.train_dataloader))
        _innermost(loader_cfg['dataset'])['pipeline'] = _innermost(test_cfg['dataset'])['pipeline']
        # the first images of the set, the same ones every time
        loader_cfg['sampler'] = dict(type='DefaultSampler', shuffle=False)
    elif split != 'test':
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    loader_cfg.update(num_workers=0, persistent_workers=False)
    return loader_cfg


def _innermost(dataset):
    """The dataset inside dataset wrappers (mmdet's ``RepeatDataset``, ...)."""
    while 'dataset' in dataset:
        dataset = dataset['dataset']
    return dataset


def calibration_inputs(cfg, num_images, shape, split='train'):
    """``num_images`` inputs of the exported graph, (1, 3, H, W) each, from a split of the
    config's dataset.

    Args:
        cfg (mmengine.Config): The config; the split's dataloader is built with its toolbox's
            registries, without workers (see :func:`split_loader_cfg`).
        num_images (int): How many images (the first ones of the split, in its order).
        shape (tuple[int, int]): Height and width the preprocessed images are resized to.
        split (str): 'train' (calibration) or 'test' (measuring the agreement). Defaults to
            'train'.

    Returns:
        list[torch.Tensor]: the inputs.

    Raises:
        ValueError: the split has fewer than ``num_images`` images.
    """
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner

    from ..utils.config import build_model, toolbox_of, with_model_preprocessor
    if num_images < 1:
        raise ValueError(f'Calibrate on at least one image, not {num_images}')
    init_default_scope(toolbox_of(cfg))
    loader = Runner.build_dataloader(split_loader_cfg(cfg, split))
    preprocessor = build_model(with_model_preprocessor(cfg)).data_preprocessor
    images = []
    for data in loader:
        with torch.no_grad():
            inputs = preprocessor(data, False)['inputs']
        for image in inputs:
            images.append(F.interpolate(image[None].float(), size=tuple(shape),
                                        mode='bilinear', align_corners=False))
            if len(images) == num_images:
                return images
    raise ValueError(f'{num_images} images of the {split} set of {cfg.filename} asked for, but '
                     f'it has {len(images)}; ask for fewer (--calib-images)')


def quantize_for_xnnpack(graph_module, example, calibration):
    """PT2E int8 quantization of an exported module (``torch.export.export(...).module()``).

    Args:
        graph_module (torch.fx.GraphModule): The exported module (float32).
        example (torch.Tensor): An input of the export shape (not used for calibration).
        calibration (list[torch.Tensor]): Inputs the activation ranges are observed on.

    Returns:
        torch.fx.GraphModule: the quantized module (quantize/dequantize ops around the int8
        ones), to export again and lower.
    """
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from .xnnpack_quantizer import xnnpack_quantizer
    prepared = prepare_pt2e(graph_module, xnnpack_quantizer())
    with torch.no_grad():
        for x in calibration:
            prepared(x)
        quantized = convert_pt2e(prepared)
        quantized(example)  # fails here, with PyTorch's message, if the graph broke
    return quantized


def agreement(model, run_int8, inputs, toolbox):
    """How the int8 model's outputs agree with the float32 model's on ``inputs``.

    Args:
        model (nn.Module): The float32 model (an :class:`~.onnx_export.OnnxModel`).
        run_int8 (callable): Input -> list of output tensors of the int8 model.
        inputs (list[torch.Tensor]): Images, (1, 3, H, W) each.
        toolbox (str): 'mmpretrain' (top-1 agreement), 'mmseg' (agreement of the per-pixel
            argmax) or 'mmdet' (the head maps compared).

    Returns:
        dict: ``images``, ``sqnr_db`` (signal-to-quantization-noise ratio of all outputs:
        10·log10(Σ fp32² / Σ (int8 - fp32)²)) and, for a classifier ``top1_agreement``, for a
        segmentor ``pixel_agreement``, for a detector ``objectness_agreement`` (the fraction
        of anchors whose objectness, sigmoid > 0.5 or not, is the same), all in [0, 1].
    """
    signal = noise = 0.
    same = total = 0
    for x in inputs:
        with torch.no_grad():
            want = [t.float() for t in _flatten(model(x))]
        got = [torch.as_tensor(t).float() for t in run_int8(x)]
        for w, g in zip(want, got):
            signal += float((w * w).sum())
            noise += float(((g - w)**2).sum())
        if toolbox == 'mmpretrain':
            same += int((want[0].argmax(1) == got[0].argmax(1)).sum())
            total += want[0].shape[0]
        elif toolbox == 'mmseg':
            same += int((want[0].argmax(1) == got[0].argmax(1)).sum())
            total += want[0][:, 0].numel()
        else:
            anchors = model.model.bbox_head.num_base_priors
            for w, g in zip(want, got):
                # YOLOv3: (B, anchors * (5 + classes), H, W); channel 4 of an anchor's is its
                # objectness logit
                w, g = (t.unflatten(1, (anchors, -1))[:, :, 4] for t in (w, g))
                same += int(((w > 0) == (g > 0)).sum())
                total += w.numel()
    key = {'mmpretrain': 'top1_agreement', 'mmseg': 'pixel_agreement'}.get(
        toolbox, 'objectness_agreement')
    return {'images': len(inputs), key: same / max(total, 1),
            'sqnr_db': float(10 * np.log10(signal / noise)) if noise else float('inf')}


class _CalibrationReader:
    """onnxruntime's CalibrationDataReader over a list of inputs."""

    def __init__(self, inputs, name='input'):
        self._items = iter([{name: x.numpy()} for x in inputs])

    def get_next(self):
        return next(self._items, None)

    def rewind(self):  # onnxruntime calls it between calibration passes; one pass is enough
        pass


def quantize_onnx(fp32_path, out, calibration):
    """Static int8 QDQ quantization of an ONNX file by onnxruntime.

    Args:
        fp32_path (str): The float32 ONNX file (from :func:`~.onnx_export.export_onnx`).
        out (str): The int8 ONNX file to write (the caller renames it into place).
        calibration (list[torch.Tensor]): Inputs the activation ranges are observed on.
    """
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    quantize_static(fp32_path, out, _CalibrationReader(calibration),
                    quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)


def export_onnx_int8(cfg, out, shape, checkpoint=None, calib_images=32, opset=None):
    """Export a config's model to ONNX (checked by :func:`~.onnx_export.export_onnx`), quantize
    it to int8 QDQ on ``calib_images`` images of the config's training set, and write it to
    ``out``.

    Args:
        cfg (mmengine.Config): An mmpretrain, mmdet or mmseg config.
        out (str): The int8 ONNX file to write; written only once both steps succeeded.
        shape (tuple[int, int]): Input height and width (static).
        checkpoint (str, optional): Weights to load. Defaults to None (initialised weights).
        calib_images (int): Calibration images. Defaults to 32.
        opset (int, optional): ONNX opset. Defaults to the ONNX export's.

    Returns:
        dict: ``fp32_bytes`` and ``bytes`` (file sizes), ``agreement`` (the int8 file against
        the fp32 model on the first ``calib_images`` test images, see :func:`agreement`).
    """
    import os
    import os.path as osp

    import onnxruntime as ort

    from ..utils.fileio import temporary_path
    from .onnx_export import DEFAULT_OPSET, build_onnx_model, export_onnx
    calibration = calibration_inputs(cfg, calib_images, shape, 'train')
    held_out = calibration_inputs(cfg, calib_images, shape, 'test')
    directory = osp.dirname(osp.abspath(out))
    os.makedirs(directory, exist_ok=True)
    with temporary_path(directory, f'.{osp.basename(out)}.', '.fp32.onnx') as fp32, \
            temporary_path(directory, f'.{osp.basename(out)}.', '.tmp') as tmp:
        export_onnx(cfg, fp32, shape, checkpoint, opset=opset or DEFAULT_OPSET)
        quantize_onnx(fp32, tmp, calibration)
        session = ort.InferenceSession(tmp, providers=['CPUExecutionProvider'])
        record = dict(fp32_bytes=osp.getsize(fp32), bytes=osp.getsize(tmp))
        model = build_onnx_model(cfg, checkpoint)
        record['agreement'] = agreement(
            model, lambda x: session.run(None, {'input': x.numpy()}), held_out, model.toolbox)
        os.replace(tmp, out)
    return record
