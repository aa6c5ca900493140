# XFormer-S on ImageNet-1K with the recipe the paper takes from MobileViT (ml-cvnets'
# mobilevit_s.yaml): 256x256 RandomResizedCrop + horizontal flip, 300 epochs at a total batch of
# 1024 (8 GPUs x 128), AdamW (lr 0.002, weight decay 0.01), 3000 iterations of linear warm-up from
# 0.0002 then cosine down to 0.0002, label smoothing 0.1, EMA of the weights (momentum 0.0005),
# evaluation at 256 (short side resized to 288, centre crop 256). Inputs are RGB scaled to [0, 1]
# as in MobileViT (and as the YOLOv3 detection configs feed the backbone).
# Not reproduced: MobileViT's multi-scale batch sampler (160-320 px crops) and its classifier
# dropout of 0.1 (mmpretrain's LinearClsHead has none).
# Expects ImageNet at data/imagenet (mmpretrain's layout).
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_256.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmxformer'], allow_failed_imports=False)
# The base's visualizer without the `_scope_` key that mmengine adds to what a config inherits
# from another package: mmpretrain's tools/visualization/browse_dataset.py passes the dict's keys
# to UniversalVisualizer itself, which takes no `_scope_`.
visualizer = dict(
    _delete_=True, type='UniversalVisualizer', vis_backends=[dict(type='LocalVisBackend')])

model = dict(
    type='ImageClassifier',
    backbone=dict(type='XFormer', arch='small', attn_cfg=dict(type='CrossFeatureAttention')),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=640,  # XFormer(arch='small').out_channels
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02),
        topk=(1, 5)))

data_preprocessor = dict(num_classes=1000, mean=[0., 0., 0.], std=[255., 255., 255.], to_rgb=True)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=256, backend='pillow', interpolation='bilinear'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=288, edge='short', backend='pillow', interpolation='bilinear'),
    dict(type='CenterCrop', crop_size=256),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=128, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=128, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(
    _delete_=True,
    optimizer=dict(type='AdamW', lr=0.002, weight_decay=0.01, betas=(0.9, 0.999), eps=1e-8))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=3000),
    dict(
        type='CosineAnnealingLR',
        eta_min=2e-4,
        by_epoch=True,
        begin=0,
        end=300,
        convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)
auto_scale_lr = dict(base_batch_size=1024)

custom_hooks = [dict(type='EMAHook', momentum=5e-4, priority='ABOVE_NORMAL')]
