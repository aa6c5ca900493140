"""PT2E int8 quantization of XFormer for ExecuTorch's XNNPACK backend.

ExecuTorch's ``XNNPACKQuantizer`` with per-channel symmetric int8 weights and static int8
activations, three things added:

- the LayerNorms and XFA's mixing (in their runtime forms,
  :func:`mmxformer.models.to_runtime_form`) stay float32 (:func:`float_modules`): they divide
  by norms of the tokens, which int8 does not resolve. XFA's qkv projection, a module beside
  the mixing, is an int8 linear layer like the others, whose output the mixing dequantizes; in
  float32 it was the largest float32 operator of the int8 programs, 9 % of XFormer-S's int8
  time at 1024x1024 (docs/int8.md);
- a zero padding shares its input's scale and zero point. An XF block pads a feature map whose
  height or width is not a multiple of its patch size (XFormer-XXS at 32x32: the 1x1 map of the
  last stage to 2x2). ``XNNPACKQuantizer`` leaves ``aten.pad`` unannotated, so the pad reads the
  dequantized output of a quantized conv, and XNNPACK's runtime then fails to build the program
  (``Failed to create StaticConstantPad node ... xnn_status_invalid_parameter``,
  ``XNNCompiler::compileModel failed: 0x1``). Sharing the input's quantization is exact for a
  zero padding: 0.0 is the zero point;
- SiLU and sigmoid run in int8. ``XNNPACKQuantizer`` leaves ``aten.silu(_)`` and
  ``aten.sigmoid`` unannotated, so every SiLU of the paper's model (one after nearly every
  convolution) converted its int8 input to float32, ran a float32 sigmoid and product and
  converted back: about half of XFormer-S's int8 time at 1024x1024 (docs/int8.md). Here each
  SiLU is split into ``x * sigmoid(x)`` before annotation (:func:`split_silu`); a sigmoid whose
  input is int8 reads it with its quantization and writes the fixed quantization of a value in
  (0, 1) (:data:`SIGMOID_OUTPUT`), and the product reads that without requantizing. XNNPACK
  then runs each SiLU as one int8 element-wise operator and each gate's sigmoid and product in
  int8, with no conversion around them (XNNPACK's profile, read by
  ``test_the_paper_model_runs_silu_in_int8``).
"""
import torch
from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
    XNNPACKQuantizer, get_symmetric_quantization_config)
from torchao.quantization.pt2e.quantizer import (FixedQParamsQuantizationSpec,
                                                 QuantizationAnnotation, SharedQuantizationSpec)

from ...models.layers import RuntimeCrossFeatureMixing, RuntimeLayerNorm

ANNOTATION = 'quantization_annotation'  # the node.meta key of PT2E's annotations
#: int8 check: largest absolute difference between ExecuTorch's int8 kernels and PyTorch running
#: the same quantized graph, as a fraction of the output's largest magnitude: both requantize
#: every layer, and their roundings may differ by a step, which the following layers carry on.
INT8_TOLERANCE = 0.1
#: A sigmoid's int8 output: (0, 1) in 256 steps, as torch.ao quantizes a sigmoid to int8
SIGMOID_OUTPUT = FixedQParamsQuantizationSpec(
    dtype=torch.int8,
    scale=1 / 256,
    zero_point=-128,
    quant_min=-128,
    quant_max=127,
    qscheme=torch.per_tensor_affine)
aten = torch.ops.aten


def float_modules():
    """Module types left in float32 (see the module's docstring)."""
    return (RuntimeLayerNorm, RuntimeCrossFeatureMixing)


def is_zero_padding(node):
    """Whether an FX node is ``aten.pad`` with the constant 0."""
    if node.op != 'call_function' or node.target != aten.pad.default:
        return False
    mode = node.args[2] if len(node.args) > 2 else node.kwargs.get('mode', 'constant')
    value = node.args[3] if len(node.args) > 3 else node.kwargs.get('value')
    return mode == 'constant' and value in (None, 0)


def split_silu(graph_module):
    """Replace each ``aten.silu`` of an exported module by ``x * aten.sigmoid(x)``, in place;
    also each in-place ``aten.silu_`` (mmcv's activations) whose input has no other reader."""
    graph = graph_module.graph
    for node in list(graph.nodes):
        if node.op != 'call_function' or node.target not in (aten.silu.default, aten.silu_.default):
            continue
        x = node.args[0]
        if node.target == aten.silu_.default and len(x.users) > 1:
            continue  # another reader of x sees it after the in-place SiLU: left as it is
        with graph.inserting_before(node):
            gate = graph.call_function(aten.sigmoid.default, (x, ))
            product = graph.call_function(aten.mul.Tensor, (x, gate))
        gate.meta = dict(node.meta)  # the same shape and dtype
        product.meta = dict(node.meta)
        node.replace_all_uses_with(product)
        graph.erase_node(node)
    graph_module.recompile()
    return graph_module


def int8_input(node):
    """The first input of an FX node if the quantizer annotated it with an int8 output, else
    None."""
    source = node.args[0] if node.op == 'call_function' and node.args else None
    if not isinstance(source, torch.fx.Node):
        return None
    annotation = source.meta.get(ANNOTATION)
    return source if annotation is not None and annotation.output_qspec is not None else None


class XFormerXnnpackQuantizer(XNNPACKQuantizer):
    """``XNNPACKQuantizer`` with int8 SiLUs and sigmoids, whose zero paddings share their input's
    quantization (see the module's docstring)."""

    def transform_for_annotation(self, model):
        return split_silu(super().transform_for_annotation(model))

    def annotate(self, model):
        model = super().annotate(model)
        for node in model.graph.nodes:
            source = int8_input(node)
            if source is None:
                continue  # a float32 input: the node stays float32 too
            if is_zero_padding(node):
                shared = SharedQuantizationSpec(source)
                node.meta[ANNOTATION] = QuantizationAnnotation(
                    input_qspec_map={source: shared}, output_qspec=shared, _annotated=True)
            elif node.target == aten.sigmoid.default:
                node.meta[ANNOTATION] = QuantizationAnnotation(
                    input_qspec_map={source: SharedQuantizationSpec(source)},
                    output_qspec=SIGMOID_OUTPUT,
                    _annotated=True)
                # the product reads the sigmoid as it is, not requantized to its own range
                for user in node.users:
                    annotation = user.meta.get(ANNOTATION)
                    if annotation is not None and node in annotation.input_qspec_map:
                        annotation.input_qspec_map[node] = SharedQuantizationSpec(node)
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
