# ../xformer-xxs-relu_digits.py with the backbone in its deployed structure
# (XFormer.switch_to_deploy(): BatchNorm folded into the convs, and the transformers'
# TokenBatchNorms into the linear layers after them), as mmpretrain's configs/mobileone/deploy/
# are. Checkpoints converted by mmpretrain's tools/model_converters/reparameterize_model.py from
# that config load here and give the same outputs.
_base_ = '../xformer-xxs-relu_digits.py'

model = dict(backbone=dict(deploy=True))
