# Embedded default: configs/xformer_yolov3_coco.py on the generated digits set (COCO layout,
# `python tools/misc/make_digits.py det`), trained from scratch on the CPU in minutes. Only the data
# (root, classes, 160x160 images and what follows from their size, no RepeatDataset), and the
# schedule change.
_base_ = './xformer_yolov3_coco.py'

data_root = 'data/digits_det/'
metainfo = dict(
    classes=('0', '1', '2', '3', '4', '5', '6', '7', '8', '9'),
    palette=[(220, 20, 60), (119, 11, 32), (0, 0, 142), (0, 0, 230), (106, 0, 228), (0, 60, 100),
             (0, 80, 100), (0, 0, 70), (0, 0, 192), (250, 170, 30)])
input_size = (160, 160)

model = dict(
    bbox_head=dict(
        num_classes=10,
        # the recipe's anchors are for 320x320 inputs; these images are half that size
        anchor_generator=dict(
            base_sizes=[[(110, 62), (64,
                                     111), (132,
                                            133)], [(18,
                                                     44), (51,
                                                           48), (30,
                                                                 85)], [(5, 8), (12, 18), (36,
                                                                                           21)]])))

# No flips (a mirrored digit is another symbol) and no expand/crop: the digits are small already.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=input_size, keep_ratio=True),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=input_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
# The set itself, without the base's RepeatDataset: an epoch is one pass over the images, and the
# toolboxes' tools that iterate a dataset (mmdet's browse_dataset.py) end.
train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    dataset=dict(
        _delete_=True,
        type='CocoDataset',
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=8),
        pipeline=train_pipeline,
        backend_args=None))
val_dataloader = dict(
    batch_size=8,
    num_workers=2,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

# Schedule: 4 epochs of 250 iterations (about 10 minutes on 2 CPU cores), AdamW with a short
# warm-up and cosine decay: from scratch, SGD at the recipe's rate learns far too slowly for a
# short run.
max_epochs = 4
train_cfg = dict(max_epochs=max_epochs, val_interval=1)
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=0.002, weight_decay=0.05),
    clip_grad=dict(max_norm=35, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, eta_min_ratio=0.05)
]
default_hooks = dict(logger=dict(interval=25), checkpoint=dict(interval=1, max_keep_ckpts=1))
auto_scale_lr = dict(base_batch_size=8)
