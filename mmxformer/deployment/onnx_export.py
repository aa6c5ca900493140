"""ONNX export of a config's model, checked against PyTorch by onnxruntime.

What goes into the graph is the network, as ``model(inputs, mode='tensor')`` runs it:

- classifier (mmpretrain): the logits, (B, num_classes), before any softmax;
- detector (mmdet): the raw outputs of the head, one tensor per level (YOLOv3: a map of
  (B, num_anchors * (5 + num_classes), H / s, W / s) per stride s = 32, 16, 8). Decoding the boxes
  and NMS are left to the caller;
- segmentor (mmseg): the decoder's logits, resized bilinearly to the input size as mmseg's
  ``predict`` does, (B, num_classes, H, W), before any argmax.

Pre-processing (mean/std, channel order, padding) is not in the graph either: the input is what
the model's data preprocessor produces. The exported file records that preprocessor's settings
in its metadata (``preprocessing``), with a line on what the outputs are (``outputs``).

The exporter is PyTorch's TorchScript-based one (``torch.onnx.export(..., dynamo=False)``): it
needs nothing beyond torch and onnx and exports XFormer in seconds. The torch.export-based
exporter needs the onnxscript package, takes half a minute for the smallest XFormer, and
specialises the dynamic height and width when the model branches on them.

Every export is checked before it is written: onnxruntime runs the graph on the same random
input as PyTorch and the largest absolute difference of every output must stay within
``tolerance``; with dynamic axes, at a second batch size and input size too. The graph must use
the default ONNX domain only (no custom ops).
"""
import json
import os
import os.path as osp
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..utils.config import build_model, check_shape, preprocessing_of, toolbox_of
from ..utils.fileio import temporary_path
from ..utils.state_dict import check_pretrained_keys, read_state_dict

DEFAULT_OPSET = 17
TOLERANCE = 1e-4
DEFAULT_DOMAINS = ('', 'ai.onnx')


class ExportCheckError(RuntimeError):
    """The exported graph does not compute what the PyTorch model computes, or it needs ops
    outside the default ONNX domain."""


class OnnxModel(nn.Module):
    """The part of an mmpretrain, mmdet or mmseg model that is exported: ``mode='tensor'``, with
    the outputs as a flat tuple of tensors and, for a segmentor, the logits at the input size.

    Args:
        model (nn.Module): The model, in eval mode, with plain BatchNorm (no SyncBN).
        toolbox (str): 'mmpretrain', 'mmdet' or 'mmseg'.
    """

    def __init__(self, model, toolbox):
        super().__init__()
        self.model = model
        self.toolbox = toolbox

    def forward(self, inputs):
        outputs = self.model(inputs, mode='tensor')
        if self.toolbox == 'mmseg':
            return F.interpolate(outputs, size=inputs.shape[2:], mode='bilinear',
                                 align_corners=self.model.decode_head.align_corners)
        return tuple(_flatten(outputs))

    def output_names(self, num_outputs):
        """Names of the graph's outputs: ``logits``, or ``pred_map_<level>`` for a detector."""
        if self.toolbox == 'mmdet':
            return [f'pred_map_{level}' for level in range(num_outputs)]
        return ['logits']

    def dynamic_axes(self, output_names):
        """Dynamic batch, height and width of the input and of every output."""
        axes = {'input': {0: 'batch', 2: 'height', 3: 'width'}}
        if self.toolbox == 'mmpretrain':
            return {**axes, 'logits': {0: 'batch'}}
        if self.toolbox == 'mmseg':
            return {**axes, 'logits': axes['input']}
        for name in output_names:
            axes[name] = {0: 'batch', 2: f'{name}_height', 3: f'{name}_width'}
        return axes

    def describe_outputs(self):
        return {
            'mmpretrain': 'logits (B, num_classes), before softmax',
            'mmdet': 'raw head outputs, one per level in the order of the head (YOLOv3: '
                     'strides 32, 16, 8); box decoding and NMS are not included',
            'mmseg': 'logits (B, num_classes, H, W) at the input size, before argmax',
        }[self.toolbox]


def _flatten(outputs):
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    return [tensor for item in outputs for tensor in _flatten(item)]


def build_onnx_model(cfg, checkpoint=None):
    """The exportable model of a config, in eval mode, with SyncBN turned back into BN.

    Args:
        cfg (mmengine.Config): An mmpretrain, mmdet or mmseg config.
        checkpoint (str, optional): Weights to load; every weight of the model must be in it,
            with its shape. Defaults to None: the config's initialisation, enough to check that
            the graph is right.

    Returns:
        OnnxModel: the model.
    """
    from mmengine.model import revert_sync_batchnorm
    model = revert_sync_batchnorm(build_model(cfg))
    if checkpoint is not None:
        check_pretrained_keys(model, checkpoint)  # every weight present, with its shape
        model.load_state_dict(read_state_dict(checkpoint), strict=False)
    return OnnxModel(model.eval(), toolbox_of(cfg))


def export_onnx(cfg,
                out,
                shape,
                checkpoint=None,
                dynamic=False,
                opset=DEFAULT_OPSET,
                second_shape=None,
                tolerance=TOLERANCE):
    """Export a config's model to ONNX, check it with onnxruntime, and write it to ``out``.

    Args:
        cfg (mmengine.Config): An mmpretrain, mmdet or mmseg config.
        out (str): The ONNX file to write; written only once the check passed.
        shape (tuple[int, int]): Input height and width (of the traced input, and of the check).
        checkpoint (str, optional): Weights to load. Defaults to None (initialised weights).
        dynamic (bool): Make the batch size, height and width dynamic. Defaults to False.
        opset (int): ONNX opset version. Defaults to 17.
        second_shape (tuple[int, int], optional): With ``dynamic``, the input size of the second
            check, run with a batch of 2. Defaults to ``shape`` plus (32, 64).
        tolerance (float): Largest absolute difference allowed between onnxruntime's and
            PyTorch's outputs (float32). Defaults to 1e-4.

    Returns:
        list[dict]: One record per check: ``input_shape`` and ``max_abs_diff`` (output name ->
        largest absolute difference).

    Raises:
        ExportCheckError: onnxruntime's outputs differ by more than ``tolerance``, or the graph
            has ops outside the default ONNX domain; nothing is written.
    """
    import onnx
    check_shape(cfg, shape)
    input_shapes = [(1, 3, *shape)]
    if dynamic:
        second_shape = second_shape or (shape[0] + 32, shape[1] + 64)
        check_shape(cfg, second_shape)
        input_shapes.append((2, 3, *second_shape))

    model = build_onnx_model(cfg, checkpoint)
    inputs = [_random_input(input_shape, seed) for seed, input_shape in enumerate(input_shapes)]
    with torch.no_grad():
        expected = [[t.numpy() for t in _flatten(model(x))] for x in inputs]
    output_names = model.output_names(len(expected[0]))

    directory = osp.dirname(osp.abspath(out))
    os.makedirs(directory, exist_ok=True)
    with temporary_path(directory, f'.{osp.basename(out)}.', '.tmp') as tmp:
        _trace_to_onnx(model, inputs[0], tmp, output_names, dynamic, opset)
        graph = onnx.load(tmp)
        onnx.checker.check_model(graph)
        check_default_domain(graph)
        records = [
            compare_outputs(tmp, x, expected_outputs, output_names, tolerance)
            for x, expected_outputs in zip(inputs, expected)
        ]
        _add_metadata(graph, dict(
            preprocessing=json.dumps(preprocessing_of(cfg)),
            outputs=model.describe_outputs(),
            config=osp.basename(cfg.filename or ''),
            checkpoint=osp.basename(checkpoint or '')))
        onnx.save(graph, tmp)
        os.replace(tmp, out)
    return records


def _random_input(shape, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator)


def _trace_to_onnx(model, x, path, output_names, dynamic, opset):
    dynamic_axes = model.dynamic_axes(output_names) if dynamic else None
    with warnings.catch_warnings():
        # dynamo=False is the exporter chosen on purpose (see the module's docstring)
        warnings.filterwarnings('ignore', 'You are using the legacy TorchScript-based ONNX export')
        torch.onnx.export(
            model, (x, ),
            path,
            dynamo=False,
            opset_version=opset,
            input_names=['input'],
            output_names=output_names,
            dynamic_axes=dynamic_axes)


def check_default_domain(graph):
    """Raise :class:`ExportCheckError` if a node of the ONNX graph is not a default-domain op."""
    custom = sorted({f'{node.domain}::{node.op_type}'
                     for node in graph.graph.node if node.domain not in DEFAULT_DOMAINS})
    if custom:
        raise ExportCheckError(f'The exported graph uses ops outside the default ONNX domain: '
                               f'{custom}; runtimes other than the one they were written for '
                               'cannot run it')


def compare_outputs(path, x, expected, output_names, tolerance=TOLERANCE):
    """Run the ONNX file at ``path`` in onnxruntime on ``x`` and compare with ``expected``.

    Returns:
        dict: ``input_shape`` and ``max_abs_diff`` (output name -> largest absolute difference).

    Raises:
        ExportCheckError: the graph has no input, an output has another shape, or differs by
            more than ``tolerance``.
    """
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    if [node.name for node in session.get_inputs()] != ['input']:
        raise ExportCheckError('The exported graph does not read its input: the trace lost the '
                               'path from the input to the outputs (an in-place write the '
                               'tracer did not record?)')
    actual = session.run(output_names, {'input': x.numpy()})
    diffs = {}
    for name, got, want in zip(output_names, actual, expected):
        if got.shape != want.shape:
            raise ExportCheckError(f'onnxruntime gives {name} of shape {got.shape} for an input '
                                   f'of shape {tuple(x.shape)}; PyTorch gives {want.shape}')
        diffs[name] = float(np.abs(got - want).max()) if got.size else 0.
    worst = max(diffs, key=diffs.get)
    if not diffs[worst] <= tolerance:  # also catches NaN
        raise ExportCheckError(
            f'onnxruntime and PyTorch disagree for an input of shape {tuple(x.shape)}: max abs '
            f'difference {diffs[worst]:.3g} in {worst} > tolerance {tolerance:g} '
            f'(all outputs: {_format(diffs)})')
    return dict(input_shape=tuple(x.shape), max_abs_diff=diffs)


def _format(diffs):
    return ', '.join(f'{name} {diff:.3g}' for name, diff in diffs.items())


def _add_metadata(graph, metadata):
    for key, value in metadata.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
