# The stronger multi-scale recipe: mmdet's YOLOv3-MobileNetV2 ms-416 (train at 320-416, test at
# 416) with XFormer-S, as configs/xformer_yolov3_coco.py.
_base_ = 'mmdet::yolo/yolov3_mobilenetv2_8xb24-ms-416-300e_coco.py'
custom_imports = dict(imports=['mmxformer'], allow_failed_imports=False)

model = dict(
    backbone=dict(_delete_=True, type='XFormer', arch='small', out_indices=(2, 3, 4)),
    # XFormer(arch='small', out_indices=(2, 3, 4)).out_channels, deepest first
    neck=dict(in_channels=[160, 128, 96]))
