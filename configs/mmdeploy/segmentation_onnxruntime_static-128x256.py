# Digits segmentor (configs/xformer_mlp-decoder_digits.py) -> ONNX Runtime with mmdeploy,
# static 1x3x128x256, the size of the digits images (whole-image test, as the config's). Keys of
# mmdeploy 1.3.1's configs/mmseg/segmentation_onnxruntime_static-1024x2048.py (Apache-2.0).
# The graph outputs the label map (1, 1, 128, 256), int64 (with_argmax); with_argmax=False
# outputs the logits (1, 11, 128, 256) instead.
_base_ = ['./_base_/onnxruntime_static.py']

onnx_config = dict(input_shape=[256, 128])  # (W, H)
codebase_config = dict(type='mmseg', task='Segmentation', with_argmax=True)
