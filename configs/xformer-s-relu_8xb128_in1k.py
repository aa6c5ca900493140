# XFormer-S-ReLU with the paper's ImageNet-1K recipe (configs/xformer-s_8xb128_in1k.py).
# The backbone: configs/_base_/xformer_relu.py.
_base_ = ['./xformer-s_8xb128_in1k.py', './_base_/xformer_relu.py']

model = dict(backbone={{_base_.xformer_relu}})
