import math
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from mmxformer.cli import amp_optim_wrapper
from mmxformer.data.digits import make_digits_det
from mmxformer.engine.optimizers import CPUBF16OptimWrapper
from mmxformer.models import CrossFeatureAttention, XFormer

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DIGITS = osp.join(ROOT, 'configs/xformer_yolov3_digits.py')


def relative_error(output, reference):
    return ((output.float() - reference).norm() / reference.norm()).item()


@pytest.mark.skipif(torch.cuda.is_available(), reason='--amp picks fp16 on CUDA')
def test_amp_on_the_cpu_is_bf16():
    assert amp_optim_wrapper(dict(optimizer=dict(type='AdamW')))['type'] == 'CPUBF16OptimWrapper'
    with pytest.raises(ValueError, match="--amp needs optim_wrapper.type 'OptimWrapper'"):
        amp_optim_wrapper(dict(type='ApexOptimWrapper'))


def test_cpu_bf16_wrapper_autocasts_the_forward_and_keeps_fp32_weights():
    model = nn.Linear(8, 4)
    wrapper = CPUBF16OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    with wrapper.optim_context(model):
        out = model(torch.randn(2, 8))
    assert out.dtype == torch.bfloat16
    wrapper.backward(out.float().square().mean())
    assert model.weight.dtype == model.weight.grad.dtype == torch.float32


# bfloat16 keeps 8 significant bits: one rounding is up to 2^-9 ≈ 0.2 % of a value. XFA's
# L2 norms, context sum over the N tokens and temperature run in bf16 under CPU autocast (torch
# does not upcast norm on the CPU); measured relative errors: XFA ≈ 0.25 % at every input scale,
# XFormer-S's outputs ≈ 1 % after its 9 transformer layers and 16 conv blocks.
XFA_TOLERANCE = 0.01
XFORMER_TOLERANCE = 0.03


@pytest.mark.parametrize('scale', [1e-3, 1., 30.])
def test_xfa_under_bf16_autocast_stays_close_to_fp32(scale):
    attn = CrossFeatureAttention(144, qkv_dims=96, num_heads=4).eval()
    with torch.no_grad():
        attn.temperature.copy_(torch.tensor([0.5, 1., 4., 16.]))  # learnt λ can grow
        x = torch.randn(2, 4096, 144) * scale  # 4096 tokens: a 128x128 map in 2x2 patches
        reference = attn(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            output = attn(x)
    assert output.dtype == torch.bfloat16
    error = relative_error(output, reference)
    print(f'XFA, inputs x{scale:g}: relative error {error:.2%} under bf16 autocast')
    assert error < XFA_TOLERANCE


def test_xformer_s_under_bf16_autocast_stays_close_to_fp32():
    model = XFormer('small', out_indices=(2, 3, 4, 5)).eval()
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        references = model(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            outputs = model(x)
    errors = [relative_error(output, ref) for output, ref in zip(outputs, references)]
    print('XFormer-S under bf16 autocast, relative error of outputs 2-5: ' +
          ', '.join(f'{error:.2%}' for error in errors))
    assert max(errors) < XFORMER_TOLERANCE


@pytest.mark.needs('mmdet')
@pytest.mark.slow
def test_train_with_amp_on_the_cpu(tmp_path):
    root = str(make_digits_det(tmp_path / 'digits', num_train=4, num_val=2, seed=2))
    ann = osp.join(root, 'annotations/instances_val2017.json')
    work_dir = tmp_path / 'work'
    result = subprocess.run([
        sys.executable,
        osp.join(ROOT, 'tools/train.py'), DIGITS, '--amp', '--work-dir',
        str(work_dir), '--cfg-options', f'train_dataloader.dataset.data_root={root}',
        f'val_dataloader.dataset.data_root={root}', f'test_dataloader.dataset.data_root={root}',
        f'val_evaluator.ann_file={ann}', f'test_evaluator.ann_file={ann}', 'train_cfg.max_epochs=1',
        'train_cfg.val_interval=2', 'train_dataloader.batch_size=2',
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
        'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
        'default_hooks.logger.interval=1'
    ],
                            cwd=tmp_path,
                            env=dict(os.environ, OMP_NUM_THREADS='2'),
                            capture_output=True,
                            text=True,
                            timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    dumped = (work_dir / 'xformer_yolov3_digits.py').read_text()
    assert "type='CPUBF16OptimWrapper'" in dumped
    losses = [
        float(loss) for loss in re.findall(r'Epoch\(train\) \[1\]\[\d/2\].* loss: (\S+)', output)
    ]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses), output[-3000:]
