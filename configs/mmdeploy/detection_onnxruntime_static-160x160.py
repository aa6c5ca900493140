# Digits detector (configs/xformer_yolov3_digits.py) -> ONNX Runtime with mmdeploy, end to end
# (box decoding and NMS in the graph), static 1x3x160x160, the size of the digits images.
_base_ = ['./_base_/detection_onnxruntime_static.py']

onnx_config = dict(input_shape=[160, 160])  # (W, H)
