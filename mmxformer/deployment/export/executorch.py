"""ExecuTorch export of a config's model for the XNNPACK backend, checked by ExecuTorch's runtime.

What is exported is what the ONNX export takes (:func:`~.network.build_network`): a
classifier's logits, a detector's raw head maps, a segmentor's logits at the input size; the
input is the data preprocessor's output, at one static shape.

The path: ``torch.export`` -> ``to_edge_transform_and_lower`` with the ``XnnpackPartitioner`` ->
``to_executorch``. Ops the partitioner does not take run in ExecuTorch's portable kernels, one
thread and no vectorisation, and every such op splits the graph into one more XNNPACK delegate.
In XFormer these were the LayerNorms (XNNPACK has none), the L2 norms, the identity and the
diagonal of :class:`~mmxformer.models.layers.CrossFeatureAttention` and the ``split`` of its qkv
projection. Before the export, :func:`mmxformer.models.to_runtime_form` replaces those modules by
their runtime forms, which live with the layers and are built from ops XNNPACK runs (means over
the two innermost axes of 4-D tensors, products with constant matrices); the result is checked
against the original model like the rest.

Every export is checked before anything is written: ExecuTorch's own runtime
(``executorch.runtime.Runtime``) loads the program from its bytes and runs it on a random input,
and its outputs are compared with PyTorch's (float32: max abs difference ≤ ``tolerance``).
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch
from mmengine.config import Config

from ...models import to_runtime_form
from ...utils.config import check_shape
from ...utils.fileio import write_bytes_atomically
from ..preflight import check_disk_space, check_memory, check_output_is_no_input, weight_bytes
from ..quantize.calibration import agreement, calibration_inputs
from .network import TOLERANCE, ExportCheckError, build_network, random_input

INSTALL_HINT = ("ExecuTorch is not installed: install the deployment extra, "
                "`pip install -e '.[deploy]'` (requirements/deploy.txt)")


def require_executorch():
    """Raise ImportError with the way to install ExecuTorch if it is not importable."""
    try:
        import executorch.exir  # noqa: F401
        import executorch.runtime  # noqa: F401
    except ImportError as error:
        raise ImportError(f'{INSTALL_HINT} ({error})') from error


def lower_to_xnnpack(exported: torch.export.ExportedProgram) -> Tuple[bytes, dict]:
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


def load_method(program: Union[bytes, str]):
    """The ``forward`` method of an ExecuTorch program (bytes or a path), loaded by
    ExecuTorch's runtime."""
    require_executorch()
    from executorch.runtime import Runtime
    loaded = Runtime.get().load_program(program)
    method = loaded.load_method('forward')
    method.program = loaded  # the method reads the program's memory: keep it alive
    return method


def run_program(method, x: torch.Tensor) -> List[torch.Tensor]:
    """Outputs of a loaded method on ``x``, as a list of tensors."""
    return [out.clone() for out in method.execute([x.contiguous()])]


def compare(method, x: torch.Tensor, expected: Sequence[torch.Tensor],
            tolerance: float) -> List[float]:
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


def export_executorch(cfg: Config,
                      out: str,
                      shape: Tuple[int, int],
                      checkpoint: Optional[str] = None,
                      int8: bool = False,
                      calib_images: int = 32,
                      tolerance: float = TOLERANCE,
                      int8_tolerance: Optional[float] = None) -> dict:
    """Export a config's model to an ExecuTorch ``.pte`` for XNNPACK, check it with ExecuTorch's
    runtime, and write it to ``out``. The model is built, and its checkpoint read, once.

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
            magnitude. Defaults to :data:`~mmxformer.deployment.quantize.pt2e.INT8_TOLERANCE`.

    Returns:
        dict: ``max_abs_diff`` (one per output, against the PyTorch reference), ``partition``
        (see :func:`lower_to_xnnpack`), ``bytes`` (file size) and, with ``int8``,
        ``agreement`` (the int8 program against the fp32 model on the first ``calib_images``
        images of the test set, see
        :func:`~mmxformer.deployment.quantize.calibration.agreement`).

    Raises:
        ExportCheckError: the program's outputs differ by more than the tolerance; nothing is
            written.
        ValueError: Before the export: with ``int8``, the config has no training or test set,
            or fewer than ``calib_images`` images in one; :class:`~..preflight.ResourceError`:
            the input needs more memory than is free, or the disk of ``out`` too little space.
    """
    require_executorch()
    from ..quantize import pt2e
    check_output_is_no_input(out, {'the checkpoint': checkpoint})
    check_shape(cfg, shape)
    network = build_network(cfg, checkpoint)
    check_memory(network, (1, 3, *shape))
    # int8 weights take a quarter of the float32 ones
    check_disk_space(out, weight_bytes(network) // (4 if int8 else 1), "the model's weights")
    if int8:  # the images are read before the export, which takes a while
        preprocessor = network.model.data_preprocessor
        calibration = calibration_inputs(cfg, preprocessor, calib_images, shape, 'train')
        held_out = calibration_inputs(cfg, preprocessor, calib_images, shape, 'test')
    x = random_input((1, 3, *shape), 0)
    with torch.no_grad():
        expected = [t.clone() for t in network(x)]
    exported = torch.export.export(to_runtime_form(network).eval(), (x, ))
    record = {}
    if int8:
        quantized = pt2e.quantize_for_xnnpack(exported.module(), x, calibration)
        with torch.no_grad():
            expected = [t.clone() for t in quantized(x)]
        exported = torch.export.export(quantized, (x, ))
        bound = pt2e.INT8_TOLERANCE if int8_tolerance is None else int8_tolerance
        tolerance = bound * max(float(t.abs().max()) for t in expected)
    buffer, record['partition'] = lower_to_xnnpack(exported)
    method = load_method(buffer)
    record['max_abs_diff'] = compare(method, x, expected, tolerance)
    record['tolerance'] = tolerance
    if int8:
        record['agreement'] = agreement(network, lambda inputs: run_program(method, inputs),
                                        held_out)
    record['bytes'] = len(buffer)
    write_bytes_atomically(out, buffer)
    return record
