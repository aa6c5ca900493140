"""ExecuTorch export of a config's model for the XNNPACK backend, checked by ExecuTorch's runtime.

What is exported is what the ONNX export takes (:class:`~.onnx_export.OnnxModel`): a
classifier's logits, a detector's raw head maps, a segmentor's logits at the input size; the
input is the data preprocessor's output, at one static shape.

The path: ``torch.export`` -> ``to_edge_transform_and_lower`` with the ``XnnpackPartitioner`` ->
``to_executorch``. Ops the partitioner does not take run in ExecuTorch's portable kernels, one
thread and no vectorisation, and every such op splits the graph into one more XNNPACK delegate.
In XFormer these were the LayerNorms (XNNPACK has none), the L2 norms, the identity and the
diagonal of :class:`~mmxformer.models.layers.CrossFeatureAttention` and the ``split`` of its qkv
projection. Before the export, :func:`to_xnnpack_form` replaces those modules by equivalents
built from ops XNNPACK runs (means over the two innermost axes of 4-D tensors, products with
constant matrices); the result is checked against the original model like the rest.

Every export is checked before anything is written: ExecuTorch's own runtime
(``executorch.runtime.Runtime``) loads the program from its bytes and runs it on a random input,
and its outputs are compared with PyTorch's (float32: max abs difference ≤ ``tolerance``).
"""
import copy
import os
import os.path as osp

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.layers.cross_feature_attention import CrossFeatureAttention
from ..utils.fileio import temporary_path
from .onnx_export import (TOLERANCE, ExportCheckError, _flatten, _random_input,
                          build_onnx_model, check_shape)

INSTALL_HINT = ("ExecuTorch is not installed: install the deployment extra, "
                "`pip install -e '.[deploy]'` (requirements/deploy.txt)")


def require_executorch():
    """Raise ImportError with the way to install ExecuTorch if it is not importable."""
    try:
        import executorch.exir  # noqa: F401
        import executorch.runtime  # noqa: F401
    except ImportError as error:
        raise ImportError(f'{INSTALL_HINT} ({error})') from error


class XnnpackLayerNorm(nn.Module):
    """LayerNorm over the last axis, computed with ops XNNPACK has: the tokens (..., C) are
    viewed as (B, N, 1, C) so that both means are over the two innermost axes of a 4-D tensor.

    Args:
        norm (nn.LayerNorm): The LayerNorm to replace, over one axis, with its affine weights.
    """

    def __init__(self, norm):
        super().__init__()
        if len(norm.normalized_shape) != 1 or not norm.elementwise_affine:
            raise ValueError(f'XnnpackLayerNorm replaces affine LayerNorms over the last axis, '
                             f'not {norm}')
        self.eps = norm.eps
        self.weight = norm.weight
        self.bias = norm.bias

    def forward(self, x):
        shape = x.shape
        x = x.reshape(-1, shape[-2] if x.dim() > 2 else 1, 1, shape[-1])
        centred = x - x.mean((2, 3), keepdim=True)
        variance = (centred * centred).mean((2, 3), keepdim=True)
        y = centred * torch.rsqrt(variance + self.eps) * self.weight
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(shape)


class XnnpackCrossFeatureAttention(nn.Module):
    """:class:`CrossFeatureAttention` of a frozen model, with its constant matrices built once
    and without the ops XNNPACK lacks (``norm``, ``eye``, ``diagonal``, ``split``):

    - the L2 norms of the queries and keys: sqrt(d · mean(x²)), the mean over the two innermost
      axes of the qkv projection viewed as (B, N · 2h, 1, d);
    - the diagonal blocks k̄_h of the product of all heads' weights with all heads' keys: a
      mask keeps block h of row h, and a product with a row of ones sums the rows;
    - w_c (block-diagonal, (h·d, h)) and λ_h W_f (block-diagonal, (h·d, h·d)) as constants.

    Args:
        attn (CrossFeatureAttention): The module to replace; its weights are copied, so later
            changes to them are not seen.
    """

    def __init__(self, attn):
        super().__init__()
        h, d = attn.num_heads, attn.head_dims
        self.num_heads, self.head_dims, self.eps = h, d, attn.eps
        self.qkv, self.proj = attn.qkv, attn.proj
        with torch.no_grad():
            eye = torch.eye(h, dtype=attn.context_weight.dtype)
            context = (attn.context_weight[:, :, None] * eye[:, None]).reshape(h * d, h)
            feature = attn.temperature[:, None, None] * attn.feature_weight.transpose(1, 2)
            blocks = torch.block_diag(*feature)  # (h·d, h·d): row (h, e), column (h, d)
            mask = eye.repeat_interleave(d, dim=1)  # (h, h·d): 1 where column block == row
        # as weights of F.linear, (out, in): a broadcasting matmul would leave expand_copy ops
        # to the portable kernels
        self.register_buffer('context', context.t().contiguous(), persistent=False)
        self.register_buffer('feature', blocks.t().contiguous(), persistent=False)
        self.register_buffer('mask', mask, persistent=False)
        self.register_buffer('ones', torch.ones(1, h), persistent=False)

    def forward(self, x):
        B, N, _ = x.shape
        h, d = self.num_heads, self.head_dims
        qkv = self.qkv(x)
        q, k, v = qkv[..., :h * d], qkv[..., h * d:2 * h * d], qkv[..., 2 * h * d:]
        squares = qkv[..., :2 * h * d].reshape(B, N * 2 * h, 1, d)
        norms = torch.sqrt((squares * squares).mean((2, 3), keepdim=True) * d)
        norms = norms.reshape(B, N, 2 * h).clamp_min(self.eps)
        weights = F.linear(q, self.context) / (norms[..., :h] * norms[..., h:])  # (B, N, h)
        keys = torch.bmm(weights.transpose(1, 2), k) * self.mask  # (B, h, h·d), blocks h of h
        key = F.linear(keys.transpose(1, 2), self.ones).transpose(1, 2)  # (B, 1, h·d)
        scale = F.linear(key, self.feature).reshape(B, h * d, 1) / N
        return torch.bmm(v, scale * self.proj.weight.t()) + self.proj.bias


def to_xnnpack_form(model):
    """A copy of ``model`` in which every LayerNorm over the last axis and every
    :class:`CrossFeatureAttention` is replaced by its XNNPACK-friendly equivalent (see the
    module's docstring). For inference: the copy's constants are built from the weights now.

    Returns:
        nn.Module: the copy.
    """
    model = copy.deepcopy(model)
    for name, module in list(model.named_modules()):
        if isinstance(module, CrossFeatureAttention):
            replacement = XnnpackCrossFeatureAttention(module)
        elif (isinstance(module, nn.LayerNorm) and len(module.normalized_shape) == 1
              and module.elementwise_affine):
            replacement = XnnpackLayerNorm(module)
        else:
            continue
        parent, _, child = name.rpartition('.')
        setattr(model.get_submodule(parent) if parent else model, child, replacement)
    return model


def lower_to_xnnpack(exported):
    """An ExecuTorch program, as bytes, of an ``ExportedProgram``, with the XNNPACK partitioner.

    Returns:
        tuple[bytes, dict]: the program, and how many ops run where (``delegates``: XNNPACK
        subgraphs, ``portable``: op name -> count of the ops left to the portable kernels).
    """
    require_executorch()
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    program = to_edge_transform_and_lower(
        exported, partitioner=[XnnpackPartitioner()]).to_executorch()
    return program.buffer, partition_summary(program.exported_program().graph_module)


def partition_summary(graph_module):
    """How many XNNPACK delegates a lowered graph calls, and which ops run outside them."""
    portable = {}
    delegates = 0
    for node in graph_module.graph.nodes:
        if node.op != 'call_function':
            continue
        name = getattr(node.target, '__name__', str(node.target))
        if name == 'executorch_call_delegate':
            delegates += 1
        elif name not in ('getitem', 'alloc'):  # bookkeeping of the memory planner
            portable[name] = portable.get(name, 0) + 1
    return dict(delegates=delegates, portable=portable)


def load_method(program):
    """The ``forward`` method of an ExecuTorch program (bytes or a path), loaded by
    ExecuTorch's runtime."""
    require_executorch()
    from executorch.runtime import Runtime
    loaded = Runtime.get().load_program(program)
    method = loaded.load_method('forward')
    method.program = loaded  # the method reads the program's memory: keep it alive
    return method


def run_program(method, x):
    """Outputs of a loaded method on ``x``, as a list of tensors."""
    return [out.clone() for out in method.execute([x.contiguous()])]


def compare(method, x, expected, tolerance):
    """Largest absolute difference between the program's outputs on ``x`` and ``expected``.

    Raises:
        ExportCheckError: an output has another shape, or differs by more than ``tolerance``.
    """
    actual = run_program(method, x)
    if len(actual) != len(expected):
        raise ExportCheckError(f'The ExecuTorch program gives {len(actual)} outputs, PyTorch '
                               f'{len(expected)}')
    diffs = []
    for got, want in zip(actual, expected):
        if got.shape != want.shape:
            raise ExportCheckError(f'ExecuTorch gives an output of shape {tuple(got.shape)}, '
                                   f'PyTorch {tuple(want.shape)}')
        diffs.append(float((got - want).abs().max()))
    if not max(diffs) <= tolerance:  # also catches NaN
        raise ExportCheckError(
            f'ExecuTorch and PyTorch disagree for an input of shape {tuple(x.shape)}: max abs '
            f'difference {max(diffs):.3g} > tolerance {tolerance:g} (outputs: '
            f'{", ".join(f"{d:.3g}" for d in diffs)})')
    return diffs


def export_executorch(cfg,
                      out,
                      shape,
                      checkpoint=None,
                      int8=False,
                      calib_images=32,
                      tolerance=TOLERANCE,
                      int8_tolerance=None):
    """Export a config's model to an ExecuTorch ``.pte`` for XNNPACK, check it with ExecuTorch's
    runtime, and write it to ``out``.

    Args:
        cfg (mmengine.Config): An mmpretrain, mmdet or mmseg config.
        out (str): The ``.pte`` file to write; written only once the check passed.
        shape (tuple[int, int]): Input height and width (static).
        checkpoint (str, optional): Weights to load. Defaults to None (initialised weights).
        int8 (bool): Quantize to int8 (PT2E with the XNNPACK quantizer), calibrated on the
            first ``calib_images`` images of the config's training set. Defaults to False.
        calib_images (int): Calibration images for ``int8``. Defaults to 32.
        tolerance (float): fp32: largest absolute difference allowed between ExecuTorch and
            PyTorch. Defaults to 1e-4.
        int8_tolerance (float, optional): int8: largest absolute difference allowed between
            ExecuTorch's int8 kernels and PyTorch running the same quantized graph (its
            quantize/dequantize ops in float32), as a fraction of that output's largest
            magnitude. Defaults to :data:`~.quantization.INT8_TOLERANCE`.

    Returns:
        dict: ``max_abs_diff`` (one per output, against the PyTorch reference), ``partition``
        (see :func:`lower_to_xnnpack`), ``bytes`` (file size) and, with ``int8``,
        ``agreement`` (the int8 program against the fp32 model on the first ``calib_images``
        images of the test set, see :func:`~.quantization.agreement`).

    Raises:
        ExportCheckError: the program's outputs differ by more than the tolerance; nothing is
            written.
    """
    require_executorch()
    from . import quantization
    check_shape(cfg, shape)
    model = build_onnx_model(cfg, checkpoint)
    form = to_xnnpack_form(model).eval()
    x = _random_input((1, 3, *shape), 0)
    with torch.no_grad():
        expected = [t.clone() for t in _flatten(model(x))]
    exported = torch.export.export(form, (x, ))
    record = {}
    if int8:
        calibration = quantization.calibration_inputs(cfg, calib_images, shape, 'train')
        held_out = quantization.calibration_inputs(cfg, calib_images, shape, 'test')
        quantized = quantization.quantize_for_xnnpack(exported.module(), x, calibration)
        with torch.no_grad():
            reference = [t.clone() for t in _flatten(quantized(x))]
        exported = torch.export.export(quantized, (x, ))
        bound = quantization.INT8_TOLERANCE if int8_tolerance is None else int8_tolerance
        tolerance = bound * max(float(t.abs().max()) for t in reference)
        expected = reference
    buffer, record['partition'] = lower_to_xnnpack(exported)
    method = load_method(buffer)
    record['max_abs_diff'] = compare(method, x, expected, tolerance)
    record['tolerance'] = tolerance
    if int8:
        record['agreement'] = quantization.agreement(
            model, lambda inputs: run_program(method, inputs), held_out, model.toolbox)
    record['bytes'] = len(buffer)

    directory = osp.dirname(osp.abspath(out))
    os.makedirs(directory, exist_ok=True)
    with temporary_path(directory, f'.{osp.basename(out)}.', '.tmp') as tmp:
        with open(tmp, 'wb') as f:
            f.write(buffer)
        os.replace(tmp, out)
    return record
