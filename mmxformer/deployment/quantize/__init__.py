"""int8 post-training quantization, calibrated on images of the config's own dataset: PT2E for
ExecuTorch's XNNPACK backend (:mod:`.pt2e`), onnxruntime's static QDQ (:mod:`.onnxruntime`)."""
