# Embedded default: configs/xformer_mlp-decoder_cityscapes.py on the generated digit segmentation
# set (Cityscapes layout, `python tools/misc/make_digits.py seg`: 1000 train and 100 val images of
# 128x256, classes background and '0'-'9'), trained from scratch on the CPU in minutes. Only the
# data (root, classes, crops and scales for the smaller images, hard-pixel sampling for their
# imbalance) and the schedule change.
_base_ = './xformer_mlp-decoder_cityscapes.py'

data_root = 'data/digits_seg/'
# DigitsSegDataset (mmxformer/data/digits/seg_dataset.py) is imported with the plugin
custom_imports = dict(
    imports=[
        'mmxformer', 'mmxformer.visualization.seg_local_visualizer',
        'mmxformer.data.digits.seg_dataset'
    ],
    allow_failed_imports=False)
# Cityscapes' 1024x2048 images and 1024x1024 crops, scaled down to the 128x256 images.
image_scale = (256, 128)  # (W, H)
crop_size = (128, 128)

model = dict(
    data_preprocessor=dict(size=crop_size),
    # Background covers 93% of the pixels, each digit under 1%. OHEM keeps the pixels whose class
    # is predicted with a probability under 0.7 (at least 1000 a crop), so that the confidently
    # classified background drops out of the loss. Without it (and with 650 iterations of 16
    # crops) a run found the ink but could not tell the digits apart: mIoU 10. mmseg 1.2.2's
    # class_weight is no alternative: its cross_entropy fails on the ignore index 255.
    decode_head=dict(
        num_classes=11, sampler=dict(type='OHEMPixelSampler', thresh=0.7, min_kept=1000)),
    # Whole-image test: a 128x256 image is smaller than a sliding window would be.
    test_cfg=dict(_delete_=True, mode='whole'))

# As Cityscapes' pipeline, but scales of 0.75-1.5 rather than 0.5-2 (less to learn in a short run),
# no flips (a mirrored digit is another symbol, or none) and no cat_max_ratio (background covers
# over 90% of every image, so the cap could never be met).
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=image_scale, ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
# mmseg's CityscapesDataset accepts only Cityscapes' 19 classes; DigitsSegDataset is mmseg's
# BaseSegDataset with the digits' classes (background, '0'-'9'), palette and Cityscapes' suffixes.
dataset = dict(type='DigitsSegDataset', data_root=data_root)
train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    dataset=dict(
        **dataset,
        data_prefix=dict(img_path='leftImg8bit/train', seg_map_path='gtFine/train'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=1,
    dataset=dict(
        **dataset,
        data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader

# Schedule: 1300 iterations of 8 crops, validation every 260: 12.5 minutes on 2 CPU cores (0.57 s
# an iteration). Results: configs/metafile_seg.yml, docs/embedded_defaults.md.
max_iters = 1300
warmup_iters = 50
train_cfg = dict(max_iters=max_iters, val_interval=260)
# From scratch, the backbone needs a higher rate than SegFormer's 6e-5 for a pretrained MiT, and
# the decoder no 10x: both start from random weights here.
optim_wrapper = dict(
    optimizer=dict(lr=0.002), paramwise_cfg=dict(custom_keys=dict(head=dict(lr_mult=1.))))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='PolyLR', eta_min=0., power=1., begin=warmup_iters, end=max_iters, by_epoch=False)
]
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=260, max_keep_ckpts=1),
    # tools/test.py --show-dir draws every 25th val image: 4 coloured overlays.
    visualization=dict(interval=25))
