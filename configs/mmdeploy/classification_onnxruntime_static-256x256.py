# Classifier -> ONNX Runtime with mmdeploy, static 1x3x256x256: the test size of
# configs/xformer-s_8xb128_in1k.py (and of the XS and XXS configs: short side 288, centre crop
# 256). Keys of mmdeploy 1.3.1's configs/mmpretrain/classification_onnxruntime_static.py
# (Apache-2.0). The graph outputs the softmax scores, (1, 1000).
# tools/deployment/mmdeploy_convert.py THIS_FILE configs/xformer-s_8xb128_in1k.py CKPT IMG
_base_ = ['./_base_/onnxruntime_static.py']

onnx_config = dict(input_shape=[256, 256])  # (W, H)
codebase_config = dict(type='mmpretrain', task='Classification')
