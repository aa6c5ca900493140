# mmdeploy 1.3.1 deploy config for mmdet detectors, ONNX Runtime, end to end (box decoding and NMS
# in the graph), static input shape: the keys of mmdeploy's configs/mmdet/_base_/base_static.py
# and configs/mmdet/detection/detection_onnxruntime_static.py (Apache-2.0). The configs that
# inherit it set onnx_config.input_shape.
#
# Outputs: dets (1, N, 5), boxes x1 y1 x2 y2 in input pixels and the score; labels (1, N).
# For YOLOv3, mmdeploy takes the NMS IoU threshold (0.45) and the number of boxes kept (100) from
# the model's test_cfg and keeps every score above 0 (its rewrite of YOLOV3Head.predict_by_feat):
# drop the detections under the model's test_cfg.score_thr (0.05) to get mmdet's.
_base_ = ['./onnxruntime_static.py']

onnx_config = dict(output_names=['dets', 'labels'])
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
