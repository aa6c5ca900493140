# YOLOv3 with XFormer-S-ReLU in the paper's detection setting (configs/xformer_yolov3_coco.py).
# The backbone: configs/_base_/xformer_relu.py.
_base_ = ['./xformer_yolov3_coco.py', './_base_/xformer_relu.py']

model = dict(backbone={{_base_.xformer_relu}})
