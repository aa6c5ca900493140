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

The network is :func:`~.network.build_network`'s, and what differs between the toolboxes (output
names, dynamic axes, the description of the outputs) comes from the config's adapter
(:mod:`mmxformer.tasks`).

Every export is checked before it is written: onnxruntime runs the graph on the same random
input as PyTorch and the largest absolute difference of every output must stay within
``tolerance``; with dynamic axes, at a second batch size and input size too. The graph must use
the default ONNX domain only (no custom ops).
"""
import json
import os
import os.path as osp
import warnings
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.config import Config

from ...tasks import TensorModel
from ...utils.config import check_shape, preprocessing_of
from ...utils.fileio import naming_output, temporary_path
from ..preflight import check_disk_space, check_memory, check_output_is_no_input, weight_bytes
from .network import TOLERANCE, ExportCheckError, build_network, random_input

DEFAULT_OPSET = 17
DEFAULT_DOMAINS = ('', 'ai.onnx')


def export_onnx(cfg: Config,
                out: str,
                shape: Tuple[int, int],
                checkpoint: Optional[str] = None,
                dynamic: bool = False,
                opset: int = DEFAULT_OPSET,
                second_shape: Optional[Tuple[int, int]] = None,
                tolerance: float = TOLERANCE,
                network: Optional[TensorModel] = None) -> List[dict]:
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
        network (TensorModel, optional): The network of ``cfg`` and ``checkpoint``
            (:func:`~.network.build_network`), where the caller has built it already.

    Returns:
        list[dict]: One record per check: ``input_shape`` and ``max_abs_diff`` (output name ->
        largest absolute difference).

    Raises:
        ExportCheckError: onnxruntime's outputs differ by more than ``tolerance``, the graph
            has ops outside the default ONNX domain, or ops that ``opset`` lacks; nothing is
            written.
        ValueError: ``opset`` is one that this torch does not export.
        ResourceError: Before the export: an input shape needs more memory than is free, or the
            disk of ``out`` has less space free than the model's weights take.
        OSError: Writing failed (the disk filled up meanwhile); it names ``out``, and nothing
            is left of the file.
    """
    import onnx
    check_output_is_no_input(out, {'the checkpoint': checkpoint})
    check_opset(opset)
    check_shape(cfg, shape)
    input_shapes = [(1, 3, *shape)]
    if dynamic:
        second_shape = second_shape or (shape[0] + 32, shape[1] + 64)
        check_shape(cfg, second_shape)
        input_shapes.append((2, 3, *second_shape))

    network = network or build_network(cfg, checkpoint)
    for input_shape in input_shapes:
        check_memory(network, input_shape)
    check_disk_space(out, weight_bytes(network), "the model's weights")
    inputs = [random_input(input_shape, seed) for seed, input_shape in enumerate(input_shapes)]
    with torch.no_grad():
        expected = [[t.numpy() for t in network(x)] for x in inputs]
    output_names = network.task.output_names(len(expected[0]))

    directory = osp.dirname(osp.abspath(out))
    os.makedirs(directory, exist_ok=True)
    with naming_output(out), temporary_path(directory, f'.{osp.basename(out)}.', '.tmp') as tmp:
        dynamic_axes = network.task.dynamic_axes(output_names) if dynamic else None
        trace_to_onnx(network, inputs[0], tmp, output_names, dynamic_axes, opset)
        graph = onnx.load(tmp)
        onnx.checker.check_model(graph)
        check_default_domain(graph)
        records = [
            compare_outputs(tmp, x, expected_outputs, output_names, tolerance)
            for x, expected_outputs in zip(inputs, expected)
        ]
        _add_metadata(
            graph,
            dict(
                preprocessing=json.dumps(preprocessing_of(cfg)),
                outputs=network.task.output_description,
                config=osp.basename(cfg.filename or ''),
                checkpoint=osp.basename(checkpoint or '')))
        onnx.save(graph, tmp)
        os.replace(tmp, out)
    return records


def trace_to_onnx(model: torch.nn.Module,
                  x: torch.Tensor,
                  path: str,
                  output_names: Optional[Sequence[str]] = None,
                  dynamic_axes: Optional[dict] = None,
                  opset: int = DEFAULT_OPSET) -> None:
    """PyTorch's TorchScript-based ONNX export of ``model`` on ``x`` to ``path``, the input
    named ``input``; unchecked (:func:`export_onnx` checks).

    Raises:
        ValueError: ``opset`` is one that this torch does not export.
        ExportCheckError: The model has an op that ``opset`` lacks (torch's message says which
            opset has it).
    """
    check_opset(opset)
    with warnings.catch_warnings():
        # dynamo=False is the exporter chosen on purpose (see the module's docstring)
        warnings.filterwarnings('ignore', 'You are using the legacy TorchScript-based ONNX export')
        try:
            torch.onnx.export(
                model, (x, ),
                path,
                dynamo=False,
                opset_version=opset,
                input_names=['input'],
                output_names=output_names,
                dynamic_axes=dynamic_axes)
        except torch.onnx.errors.OnnxExporterError as error:
            # what follows is the TorchScript graph around the op
            reason = str(error).split(' [Caused by')[0]
            raise ExportCheckError(f'ONNX opset {opset}: {reason}') from None


def check_opset(opset: int) -> None:
    """Raise unless ``opset`` is an ONNX opset that this torch's exporter writes.

    Raises:
        ValueError: Says which opsets it writes.
    """
    from torch.onnx._constants import ONNX_MAX_OPSET, ONNX_MIN_OPSET
    if not ONNX_MIN_OPSET <= opset <= ONNX_MAX_OPSET:
        raise ValueError(f'ONNX opset {opset}: torch {torch.__version__} exports opsets '
                         f'{ONNX_MIN_OPSET} to {ONNX_MAX_OPSET} (default {DEFAULT_OPSET})')


def check_default_domain(graph):
    """Raise :class:`ExportCheckError` if a node of the ONNX graph is not a default-domain op."""
    custom = sorted({
        f'{node.domain}::{node.op_type}'
        for node in graph.graph.node if node.domain not in DEFAULT_DOMAINS
    })
    if custom:
        raise ExportCheckError(f'The exported graph uses ops outside the default ONNX domain: '
                               f'{custom}; runtimes other than the one they were written for '
                               'cannot run it')


def compare_outputs(path: str,
                    x: torch.Tensor,
                    expected: Sequence[np.ndarray],
                    output_names: Sequence[str],
                    tolerance: float = TOLERANCE) -> dict:
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
