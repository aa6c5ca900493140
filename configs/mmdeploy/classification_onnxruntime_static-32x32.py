# Digits classifier (configs/xformer-xxs_digits.py) -> ONNX Runtime with mmdeploy, static
# 1x3x32x32, the size of the digits images. Keys of mmdeploy 1.3.1's
# configs/mmpretrain/classification_onnxruntime_static.py (Apache-2.0). The graph outputs the
# softmax scores, (1, 10).
_base_ = ['./_base_/onnxruntime_static.py']

onnx_config = dict(input_shape=[32, 32])  # (W, H)
codebase_config = dict(type='mmpretrain', task='Classification')
