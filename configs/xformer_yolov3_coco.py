# YOLOv3 with an XFormer-S backbone on COCO, the paper's detection setting: mmdet's
# YOLOv3-MobileNetV2 320x320 recipe (300 epochs: 30 epochs of a 10x RepeatDataset) with the
# backbone swapped, neck and head at 96 channels. Expects COCO at data/coco/ (standard layout).
_base_ = 'mmdet::yolo/yolov3_mobilenetv2_8xb24-320-300e_coco.py'
custom_imports = dict(imports=['mmxformer'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='XFormer',
        arch='small',
        out_indices=(2, 3, 4),  # strides 8, 16, 32
        # To start from an ImageNet classifier (tools/misc/download_checkpoint.py):
        # init_cfg=dict(type='Pretrained', checkpoint=CKPT, prefix='backbone.'),
    ),
    # XFormer(arch='small', out_indices=(2, 3, 4)).out_channels, deepest first
    neck=dict(in_channels=[160, 128, 96]))
