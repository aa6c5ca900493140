# YOLOv3-XFormer-S (configs/xformer_yolov3_coco.py) -> ONNX Runtime with mmdeploy, end to end
# (box decoding and NMS in the graph), static 1x3x320x320, the recipe's test size. mmdeploy
# resizes every image to 320x320 for a static graph (keep_ratio off), where mmdet keeps the
# aspect ratio and pads.
# Keys of mmdeploy 1.3.1's configs/mmdet/_base_/base_static.py and
# configs/mmdet/detection/detection_onnxruntime_static.py (Apache-2.0).
#
# Outputs: dets (1, N, 5), boxes x1 y1 x2 y2 in input pixels and the score; labels (1, N).
# For YOLOv3, mmdeploy takes the NMS IoU threshold (0.45) and the number of boxes kept (100) from
# the model's test_cfg and keeps every score above 0 (its rewrite of YOLOV3Head.predict_by_feat):
# drop the detections under the model's test_cfg.score_thr (0.05) to get mmdet's.
_base_ = ['./_base_/onnxruntime_static.py']

onnx_config = dict(output_names=['dets', 'labels'], input_shape=[320, 320])  # (W, H)
codebase_config = dict(
    type='mmdet',
    task='ObjectDetection',
    model_type='end2end',
    post_processing=dict(
        score_threshold=0.05,
        confidence_threshold=0.005,  # for YOLOv3
        iou_threshold=0.5,
        max_output_boxes_per_class=200,
        pre_top_k=5000,
        keep_top_k=100,
        background_label_id=-1,
    ))
