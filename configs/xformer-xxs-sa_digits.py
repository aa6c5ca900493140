# The paper's ablation on the digits set: configs/xformer-xxs_digits.py with MobileViT's softmax
# self-attention in place of XFA.
_base_ = './xformer-xxs_digits.py'

model = dict(backbone=dict(attn_cfg=dict(_delete_=True, type='MultiheadSelfAttention')))
