# Embedded default: configs/xformer-xxs_8xb128_in1k.py trained from scratch on the CPU on the
# generated digits set (scikit-learn's handwritten digits, `python tools/misc/make_digits.py cls`:
# 48,000 training images, 360 test images of held-out digits, 32x32). Only the data (root,
# classes, input size, augmentation) and the schedule change; the model, AdamW, warm-up + cosine,
# label smoothing and EMA are the ImageNet recipe's. Validation and test use the test split,
# which is never trained on.
_base_ = './xformer-xxs_8xb128_in1k.py'

data_root = 'data/digits_cls'
metainfo = dict(classes=('0', '1', '2', '3', '4', '5', '6', '7', '8', '9'))
# The digits are upscaled 8x8 bitmaps: 32x32 keeps all their detail (the set is generated at
# that size; the Resize is for sets generated larger).
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
dataset = dict(_delete_=True, type='CustomDataset', data_root=data_root, metainfo=metainfo)
train_dataloader = dict(
    batch_size=64,
    num_workers=2,
    persistent_workers=True,
    dataset=dict(**dataset, data_prefix='train', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=120,
    num_workers=2,
    persistent_workers=True,
    dataset=dict(**dataset, data_prefix='test', pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(topk=(1, ))
test_evaluator = val_evaluator

# Schedule: 4 epochs of 750 iterations, 300 iterations of warm-up: about 8 minutes on 2 CPU cores
# (0.155 s an iteration). Results: configs/metafile_cls.yml, docs/embedded_defaults.md.
max_epochs = 4
iters_per_epoch = 750  # 48,000 training images / batch 64
warmup_iters = 300
train_cfg = dict(max_epochs=max_epochs, val_interval=1)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=warmup_iters),
    dict(
        type='CosineAnnealingLR',
        eta_min=0.,
        by_epoch=False,
        begin=warmup_iters,
        end=max_epochs * iters_per_epoch),
]
auto_scale_lr = dict(base_batch_size=64)
# EMA: the recipe's momentum, 5e-4, averages over ~2,000 iterations, two thirds of this run; 0.01
# averages over ~100.
custom_hooks = [dict(type='EMAHook', momentum=0.01, priority='ABOVE_NORMAL')]
default_hooks = dict(logger=dict(interval=50), checkpoint=dict(interval=1, max_keep_ckpts=1))
