# XFormer-XS (ours: MobileViT-XS widths) with XFormer-S's ImageNet-1K recipe.
_base_ = './xformer-s_8xb128_in1k.py'

model = dict(backbone=dict(arch='xsmall'), head=dict(in_channels=384))
