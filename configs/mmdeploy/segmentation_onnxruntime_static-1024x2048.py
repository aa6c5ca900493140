# XFormer-S + all-MLP decoder (configs/xformer_mlp-decoder_cityscapes.py) -> ONNX Runtime with
# mmdeploy, static 1x3x1024x2048, the Cityscapes test size. Keys of mmdeploy 1.3.1's
# configs/mmseg/segmentation_onnxruntime_static-1024x2048.py (Apache-2.0).
# The graph runs the whole image at once (mmdeploy exports mmseg's 'whole' mode only), where the
# model's config tests with 1024x1024 sliding windows; its output is the label map
# (1, 1, 1024, 2048), int64 (with_argmax); with_argmax=False outputs the logits instead.
_base_ = ['./_base_/onnxruntime_static.py']

onnx_config = dict(input_shape=[2048, 1024])  # (W, H)
codebase_config = dict(type='mmseg', task='Segmentation', with_argmax=True)
