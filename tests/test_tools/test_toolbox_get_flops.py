"""The toolboxes' own FLOP counters (their tools/analysis_tools/get_flops.py, shipped in each
package's .mim folder, on mmengine's analyzer) count what mmxformer's get_flops.py counts, with
no operator of XFA left out."""
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, digits_options
from mmengine.analysis.print_helper import _format_size
from mmengine.utils import get_installed_path

from mmxformer.analysis.complexity import complexity
from mmxformer.tasks import task_of
from mmxformer.utils.config import build_model, load_config


def run_toolbox_tool(package, config, *args):
    """The toolbox's own get_flops.py on ``config``: its printed FLOPs, e.g. '24.64M'."""
    tool = osp.join(get_installed_path(package), '.mim', 'tools', 'analysis_tools', 'get_flops.py')
    result = subprocess.run(
        [sys.executable, tool, osp.join(ROOT, config), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    # element-wise operations and normalisations go uncounted by convention (and so warned
    # about); a matrix product or convolution must not
    skipped = re.findall(r'Unsupported operator (aten::\w*(?:mm|matmul|einsum|linear|conv)\w*)',
                         result.stdout + result.stderr)
    assert not skipped, f'{package} does not count {skipped}'
    return re.search(r'^Flops: (\S+)$', result.stdout, re.MULTILINE)[1]


def options(cfg_options):
    return ['--cfg-options', *(f'{key}={value}' for key, value in cfg_options.items())]


@pytest.mark.needs('mmdet')
def test_mmdet_get_flops_counts_what_the_readme_counts(tiny_sets):
    config = 'configs/xformer_yolov3_digits.py'
    cfg_options = digits_options('det', tiny_sets['det'])
    # mmdet's tool counts the network on images of the val set: 160x160 here
    printed = run_toolbox_tool('mmdet', config, '--num-images', '1', *options(cfg_options))
    cfg = load_config(osp.join(ROOT, config), cfg_options)
    assert printed == _format_size(complexity(build_model(cfg), (160, 160), task_of(cfg))[1])


@pytest.mark.needs('mmseg')
def test_mmseg_flop_counter_counts_what_the_readme_counts():
    # mmseg 1.2.2's get_flops.py passes both input_shape and inputs to mmengine 0.10.7's
    # get_model_complexity_info, which refuses that for every model; its count is this call
    from mmengine.analysis import get_model_complexity_info
    cfg = load_config(osp.join(ROOT, 'configs/xformer_mlp-decoder_digits.py'))
    model = build_model(cfg)
    with torch.no_grad():
        counted = get_model_complexity_info(
            model, inputs=torch.rand(1, 3, 128, 256), show_table=False, show_arch=False)['flops']
    assert counted == complexity(model, (128, 256), task_of(cfg))[1]


@pytest.mark.needs('mmpretrain')
def test_mmpretrain_get_flops_counts_what_the_readme_counts():
    config = 'configs/xformer-s_8xb128_in1k.py'
    printed = run_toolbox_tool('mmpretrain', config, '--shape', '256')
    cfg = load_config(osp.join(ROOT, config))
    model = build_model(cfg)
    # mmpretrain's tool counts extract_feat (backbone and neck), not the head's linear layer
    head = model.head.fc.in_features * model.head.fc.out_features
    assert printed == _format_size(complexity(model, (256, 256), task_of(cfg))[1] - head)
