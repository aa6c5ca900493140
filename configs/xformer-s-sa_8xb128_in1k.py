# The paper's ablation: XFormer-S with MobileViT's softmax self-attention in place of XFA,
# everything else as in xformer-s_8xb128_in1k.py.
_base_ = './xformer-s_8xb128_in1k.py'

model = dict(backbone=dict(attn_cfg=dict(_delete_=True, type='MultiheadSelfAttention')))
