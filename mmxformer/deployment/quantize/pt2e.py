"""PT2E int8 quantization of XFormer for ExecuTorch's XNNPACK backend.

ExecuTorch's ``XNNPACKQuantizer`` with per-channel symmetric int8 weights and static int8
activations, two things added:

- the LayerNorms and XFA (in their runtime forms, :func:`mmxformer.models.to_runtime_form`)
  stay float32 (:func:`float_modules`): they divide by norms of the
  tokens, which int8 does not resolve, and they hold a small part of the time
  (docs/int8.md);
- a zero padding shares its input's scale and zero point. An XF block pads a feature map whose
  height or width is not a multiple of its patch size (XFormer-XXS at 32x32: the 1x1 map of the
  last stage to 2x2). ``XNNPACKQuantizer`` leaves ``aten.pad`` unannotated, so the pad reads the
  dequantized output of a quantized conv, and XNNPACK's runtime then fails to build the program
  (``Failed to create StaticConstantPad node ... xnn_status_invalid_parameter``,
  ``XNNCompiler::compileModel failed: 0x1``). Sharing the input's quantization is exact for a
  zero padding: 0.0 is the zero point.
"""
import torch
from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
    XNNPACKQuantizer, get_symmetric_quantization_config)
from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, SharedQuantizationSpec

from ...models.layers import RuntimeCrossFeatureAttention, RuntimeLayerNorm

ANNOTATION = 'quantization_annotation'  # the node.meta key of PT2E's annotations
#: int8 check: largest absolute difference between ExecuTorch's int8 kernels and PyTorch running
#: the same quantized graph, as a fraction of the output's largest magnitude: both requantize
#: every layer, and their roundings may differ by a step, which the following layers carry on.
INT8_TOLERANCE = 0.1


def float_modules():
    """Module types left in float32 (see the module's docstring)."""
    return (RuntimeLayerNorm, RuntimeCrossFeatureAttention)


def is_zero_padding(node):
    """Whether an FX node is ``aten.pad`` with the constant 0."""
    if node.op != 'call_function' or node.target != torch.ops.aten.pad.default:
        return False
    mode = node.args[2] if len(node.args) > 2 else node.kwargs.get('mode', 'constant')
    value = node.args[3] if len(node.args) > 3 else node.kwargs.get('value')
    return mode == 'constant' and value in (None, 0)


class XFormerXnnpackQuantizer(XNNPACKQuantizer):
    """``XNNPACKQuantizer`` whose zero paddings share their input's quantization."""

    def annotate(self, model):
        model = super().annotate(model)
        for node in model.graph.nodes:
            if not is_zero_padding(node):
                continue
            source = node.args[0]
            annotation = source.meta.get(ANNOTATION)
            if annotation is None or annotation.output_qspec is None:
                continue  # a float32 input: the pad stays float32 too
            shared = SharedQuantizationSpec(source)
            node.meta[ANNOTATION] = QuantizationAnnotation(
                input_qspec_map={source: shared}, output_qspec=shared, _annotated=True)
        return model


def xnnpack_quantizer():
    """The quantizer (see the module's docstring)."""
    quantizer = XFormerXnnpackQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=True))
    for module_type in float_modules():
        quantizer.set_module_type(module_type, None)
    return quantizer


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

    prepared = prepare_pt2e(graph_module, xnnpack_quantizer())
    with torch.no_grad():
        for x in calibration:
            prepared(x)
        quantized = convert_pt2e(prepared)
        quantized(example)  # fails here, with PyTorch's message, if the graph broke
    return quantized
