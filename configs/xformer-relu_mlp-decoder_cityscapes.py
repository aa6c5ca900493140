# XFormer-S-ReLU with the all-MLP decoder in the paper's segmentation setting
# (configs/xformer_mlp-decoder_cityscapes.py).
# The backbone: configs/_base_/xformer_relu.py.
_base_ = ['./xformer_mlp-decoder_cityscapes.py', './_base_/xformer_relu.py']

model = dict(backbone={{_base_.xformer_relu}})
