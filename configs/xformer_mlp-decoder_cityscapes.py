# XFormer-S with SegFormer's all-MLP decoder on Cityscapes, the paper's segmentation setting:
# mmseg's SegFormer-MiT-B0 recipe (8 GPUs x 1 image, 1024x1024 crops, 160k iterations, AdamW,
# sliding-window test at 1024x2048) with the backbone swapped. Expects Cityscapes at
# data/cityscapes/ (mmseg's layout, with the *_labelTrainIds.png maps of cityscapesscripts).
_base_ = 'mmseg::segformer/segformer_mit-b0_8xb1-160k_cityscapes-1024x1024.py'
custom_imports = dict(
    imports=['mmxformer', 'mmxformer.visualization.seg_local_visualizer'],
    allow_failed_imports=False)
# mmseg's visualizer, which also draws the images of its own tools/analysis_tools/browse_dataset.py
# (see mmxformer/visualization/seg_local_visualizer.py)
visualizer = dict(type='ContiguousSegLocalVisualizer')

model = dict(
    backbone=dict(
        _delete_=True,
        type='XFormer',
        arch='small',
        out_indices=(1, 2, 3, 4),  # strides 4, 8, 16, 32, as MiT's four stages
        # One image per GPU: batch statistics are synchronised, as in SegFormer's decoder. Outside
        # distributed training mmengine's runner turns SyncBN back into BN.
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        # To start from an ImageNet classifier (tools/misc/download_checkpoint.py):
        # init_cfg=dict(type='Pretrained', checkpoint=CKPT, prefix='backbone.'),
    ),
    # XFormer(arch='small', out_indices=(1, 2, 3, 4)).out_channels, shallowest first
    decode_head=dict(in_channels=[64, 96, 128, 160]))

# SegFormer's AdamW. Of its paramwise settings for MiT, 'head' (lr x10: the decoder starts from
# scratch, the backbone from a classifier) is kept; 'pos_block' (MiT's positional convs) has no
# XFormer counterpart and is dropped; 'norm' (which hits MiT's LayerNorms only) becomes
# norm_decay_mult, which exempts every norm layer, XFormer's BNs and LayerNorms alike, from weight
# decay; the per-head temperatures of XFA are scales like a norm's and are exempted too.
optim_wrapper = dict(
    paramwise_cfg=dict(
        _delete_=True,
        norm_decay_mult=0.,
        custom_keys={
            'head': dict(lr_mult=10.),
            'temperature': dict(decay_mult=0.)
        }))
