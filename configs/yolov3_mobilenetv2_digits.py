# The comparison for configs/xformer_yolov3_digits.py: mmdet's YOLOv3 with its own MobileNetV2
# backbone (as in yolov3_mobilenetv2_8xb24-320-300e_coco.py), on the same data and schedule, also
# from scratch (no ImageNet weights can be downloaded here).
_base_ = './xformer_yolov3_digits.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='MobileNetV2',
        out_indices=(2, 4, 6),
        act_cfg=dict(type='LeakyReLU', negative_slope=0.1)),
    neck=dict(in_channels=[320, 96, 32]))
