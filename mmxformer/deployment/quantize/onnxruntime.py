"""Static int8 QDQ quantization of an ONNX file by onnxruntime: the graph first optimized by
onnxruntime's basic (standard ONNX) level, then int8 weights per channel, uint8 activations
(MinMax calibration)."""
import errno
import os
import os.path as osp
import shutil
import tempfile
from typing import List

import torch


class _CalibrationReader:
    """onnxruntime's CalibrationDataReader over a list of inputs."""

    def __init__(self, inputs, name='input'):
        self._items = iter([{name: x.numpy()} for x in inputs])

    def get_next(self):
        return next(self._items, None)

    def rewind(self):  # onnxruntime calls it between calibration passes; one pass is enough
        pass


def optimize_onnx(path: str, out: str) -> None:
    """Write ``path`` optimized by onnxruntime's basic level to ``out``: constants folded (the
    TorchScript export computes shapes and some convolution biases at run time) and redundant
    nodes removed, in standard ONNX ops only. It is the optimization step of onnxruntime's
    ``quant_pre_process``, which writes to the system's temporary directory instead, and goes on
    without it when it fails."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization.shape_inference import add_pre_process_metadata
    model = onnx.load(path)
    # quant_pre_process's mark, which the optimizer keeps: quantize_static then does not advise
    # to pre-process (it infers the shapes itself)
    add_pre_process_metadata(model)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = out
    ort.InferenceSession(model.SerializeToString(), options, providers=['CPUExecutionProvider'])


def quantize_onnx(fp32_path: str, out: str, calibration: List[torch.Tensor]) -> None:
    """Static int8 QDQ quantization of an ONNX file by onnxruntime.

    The file is optimized first (:func:`optimize_onnx`), as onnxruntime advises: a
    convolution whose bias is computed rather than stored is left in float32 by the quantizer,
    and the int8 graph of the unoptimized TorchScript export runs slower than its float32 one.

    Args:
        fp32_path (str): The float32 ONNX file (from
            :func:`~mmxformer.deployment.export.onnx.export_onnx`).
        out (str): The int8 ONNX file to write (the caller renames it into place).
        calibration (list[torch.Tensor]): Inputs the activation ranges are observed on.

    Raises:
        OSError: The disk of ``fp32_path`` has too little space left for the optimized copy
            of it and onnxruntime's copy of that, written beside it.
    """
    from google.protobuf.message import DecodeError
    from onnxruntime.capi.onnxruntime_pybind11_state import InvalidProtobuf
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    directory = osp.dirname(osp.abspath(fp32_path))
    with tempfile.TemporaryDirectory(dir=directory, prefix='.optimized.') as scratch:
        optimized = osp.join(scratch, 'optimized.onnx')
        try:
            optimize_onnx(fp32_path, optimized)
            quantize_static(
                optimized,
                out,
                _CalibrationReader(calibration),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax)
        except (DecodeError, InvalidProtobuf):
            # on a full disk, onnxruntime's optimizer fails to write its file (InvalidProtobuf),
            # and the quantizer cuts its copy short without an error, then fails to read it back
            # (a protobuf DecodeError)
            if shutil.disk_usage(directory).free >= osp.getsize(fp32_path):
                raise
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), fp32_path) from None
