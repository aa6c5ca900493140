# Embedded default: configs/xformer-xxs_8xb128_in1k.py trained from scratch on the CPU on the
# generated digits set (scikit-learn's handwritten digits, `python tools/make_digits.py cls`:
# 4000 training images, 360 test images of held-out digits, 64x64). Only the data (root, classes,
# input size, augmentation) and the schedule change; the model, AdamW, warm-up + cosine, label
# smoothing and EMA are the ImageNet recipe's. Validation and test use the test split, which is
# never trained on.
_base_ = './xformer-xxs_8xb128_in1k.py'

data_root = 'data/digits_cls'
metainfo = dict(classes=('0', '1', '2', '3', '4', '5', '6', '7', '8', '9'))
# The digits are upscaled 8x8 bitmaps: 32x32 keeps all their detail at a quarter of the cost.
input_size = 32

model = dict(head=dict(num_classes=10, topk=(1, )))
data_preprocessor = dict(num_classes=10)

# No flip (a mirrored digit is another symbol) and no random crop (it would cut digits off).
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=input_size, backend='pillow', interpolation='bilinear'),
    dict(type='PackInputs'),
]
test_pipeline = train_pipeline
train_dataloader = dict(
    batch_size=64,
    num_workers=2,
    persistent_workers=True,
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root=data_root,
        data_prefix='train',
        metainfo=metainfo,
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=120,
    num_workers=2,
    persistent_workers=True,
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root=data_root,
        data_prefix='test',
        metainfo=metainfo,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(topk=(1, ))
test_evaluator = val_evaluator

# Schedule: 12 epochs of 63 iterations, one epoch of warm-up.
max_epochs = 12
train_cfg = dict(max_epochs=max_epochs, val_interval=1)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0., by_epoch=True, begin=1, end=max_epochs,
         convert_to_iter_based=True),
]
auto_scale_lr = dict(base_batch_size=64)
# The recipe's EMA momentum averages over ~2000 iterations; this run has ~750.
custom_hooks = [dict(type='EMAHook', momentum=0.01, priority='ABOVE_NORMAL')]
default_hooks = dict(
    logger=dict(interval=21),
    checkpoint=dict(interval=1, max_keep_ckpts=1))
