# configs/xformer_mlp-decoder_digits.py with the quantization-friendly backbone; same data and
# schedule.
# The backbone: configs/_base_/xformer_relu.py.
_base_ = ['./xformer_mlp-decoder_digits.py', './_base_/xformer_relu.py']

model = dict(backbone={{_base_.xformer_relu}})
