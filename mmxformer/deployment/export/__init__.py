"""Exporters, each checked by its own runtime: ONNX (onnxruntime), ExecuTorch (XNNPACK)."""
