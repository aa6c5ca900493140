# XFormer's quantization-friendly variant, the backbone of the configs named *-relu*: ReLU where
# the paper has SiLU (convs) and GELU (the transformer's MLPs), and BatchNorms over the tokens
# (TokenBatchNorm) where it has LayerNorms. XNNPACK fuses ReLU into its int8 convs and linears,
# and a BatchNorm folds into the next linear layer for inference, where SiLU's sigmoid and
# LayerNorm run in float32 in an int8 program (docs/int8.md).
xformer_relu = dict(
    act_cfg=dict(type='ReLU'),
    transformer_act_cfg=dict(type='ReLU'),
    transformer_norm_cfg=dict(type='TokenBatchNorm'))
