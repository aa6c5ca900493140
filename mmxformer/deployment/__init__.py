from .inference_mode import deploy
from .onnx_export import ExportCheckError, export_onnx

__all__ = ['ExportCheckError', 'deploy', 'export_onnx']
