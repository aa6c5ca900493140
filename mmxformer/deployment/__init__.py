"""Deployment: the inference form of a model (:func:`deploy`), its checked exports (ONNX,
ExecuTorch, int8), their evaluation with the toolboxes' evaluators, and mmdeploy's conversion."""
from .export.executorch import export_executorch
from .export.network import ExportCheckError
from .export.onnx import export_onnx
from .export.onnx_int8 import export_onnx_int8
from .inference_mode import deploy

__all__ = ['ExportCheckError', 'deploy', 'export_executorch', 'export_onnx', 'export_onnx_int8']
