"""Static int8 QDQ quantization of an ONNX file by onnxruntime: int8 weights per channel,
uint8 activations (MinMax calibration)."""
import errno
import os
import os.path as osp
import shutil
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


def quantize_onnx(fp32_path: str, out: str, calibration: List[torch.Tensor]) -> None:
    """Static int8 QDQ quantization of an ONNX file by onnxruntime.

    Args:
        fp32_path (str): The float32 ONNX file (from
            :func:`~mmxformer.deployment.export.onnx.export_onnx`).
        out (str): The int8 ONNX file to write (the caller renames it into place).
        calibration (list[torch.Tensor]): Inputs the activation ranges are observed on.

    Raises:
        OSError: The disk of ``fp32_path`` has too little space left for the copy of it that
            onnxruntime writes beside it.
    """
    from google.protobuf.message import DecodeError
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    try:
        quantize_static(
            fp32_path,
            out,
            _CalibrationReader(calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax)
    except DecodeError:
        # onnxruntime writes a copy of the float32 file (its shapes inferred) and reads it back;
        # on a full disk the copy is cut short without an error, and reading it fails
        if shutil.disk_usage(osp.dirname(osp.abspath(fp32_path))).free >= osp.getsize(fp32_path):
            raise
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), fp32_path) from None
