# YOLOv3-XFormer-S (configs/xformer_yolov3_coco.py) -> ONNX Runtime with mmdeploy, end to end
# (box decoding and NMS in the graph), static 1x3x320x320, the recipe's test size. mmdeploy
# resizes every image to 320x320 for a static graph (keep_ratio off), where mmdet keeps the
# aspect ratio and pads.
_base_ = ['./_base_/detection_onnxruntime_static.py']

onnx_config = dict(input_shape=[320, 320])  # (W, H)
