import os.path as osp
import shutil

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper

from mmxformer.data.checks import check_dataset_config
from mmxformer.data.digits import SEG_CLASSES, SEG_PALETTE, make_digits_seg
from mmxformer.models import XFormer
from mmxformer.utils.config import build_model

pytestmark = pytest.mark.needs('mmseg')

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CITYSCAPES = osp.join(ROOT, 'configs/xformer_mlp-decoder_cityscapes.py')
DIGITS = osp.join(ROOT, 'configs/xformer_mlp-decoder_digits.py')
LABEL_SUFFIX = '_gtFine_labelTrainIds.png'


@pytest.fixture(scope='module')
def tiny_seg(tmp_path_factory):
    """A tiny digit segmentation set (do not modify it; see ``damaged_seg``)."""
    return make_digits_seg(
        tmp_path_factory.mktemp('digits') / 'digits_seg', num_train=4, num_val=2, seed=1)


@pytest.fixture
def damaged_seg(tiny_seg, tmp_path):
    return shutil.copytree(tiny_seg, tmp_path / 'digits_seg')


def data_options(root):
    return [f'{split}_dataloader.dataset.data_root={root}' for split in ('train', 'val', 'test')]


def digits_config(root):
    cfg = Config.fromfile(DIGITS)
    cfg.merge_from_dict(dict(option.split('=', 1) for option in data_options(root)))
    return cfg


@pytest.mark.parametrize('path', [CITYSCAPES, DIGITS])
def test_head_reads_the_backbone_channels(path):
    model = build_model(Config.fromfile(path))
    assert isinstance(model.backbone, XFormer)
    assert model.backbone.out_channels == (64, 96, 128, 160)
    assert list(model.decode_head.in_channels) == list(model.backbone.out_channels)


def test_cityscapes_config_predicts_on_one_image():
    from mmseg.structures import SegDataSample
    cfg = Config.fromfile(CITYSCAPES)
    assert cfg.model.test_cfg.mode == 'slide' and cfg.crop_size == (1024, 1024)
    assert cfg.train_cfg.max_iters == 160000
    model = build_model(cfg)
    shape = (512, 1024)
    sample = SegDataSample(metainfo=dict(img_shape=shape, ori_shape=shape, pad_shape=shape))
    image = torch.randint(0, 256, (3, *shape), dtype=torch.uint8)
    with torch.no_grad():
        data = model.data_preprocessor(dict(inputs=[image], data_samples=[sample]), False)
        result, = model(**data, mode='predict')
    assert result.seg_logits.data.shape == (19, *shape)
    labels = result.pred_sem_seg.data
    assert labels.shape == (1, *shape)
    assert torch.equal(labels[0], result.seg_logits.data.argmax(0))


def test_optimizer_settings_reach_xformer_parameters():
    cfg = Config.fromfile(CITYSCAPES)
    model = build_model(cfg)
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    base_lr, base_wd = 6e-5, 0.01
    names = {id(p): n for n, p in model.named_parameters()}
    groups = {names[id(g['params'][0])]: g for g in optim_wrapper.optimizer.param_groups}
    assert groups['decode_head.fusion_conv.conv.weight']['lr'] == pytest.approx(10 * base_lr)
    backbone = {n: g for n, g in groups.items() if n.startswith('backbone.')}
    assert [g['lr'] for g in backbone.values()] == [pytest.approx(base_lr)] * len(backbone)
    no_decay = {n for n, g in backbone.items() if g['weight_decay'] == 0}
    assert 'backbone.stem.bn.weight' in no_decay
    assert any(n.endswith('.norm1.weight') for n in no_decay)
    assert any(n.endswith('.attn.temperature') for n in no_decay)
    assert groups['backbone.stem.conv.weight']['weight_decay'] == pytest.approx(base_wd)


def test_digits_config_matches_the_generated_set():
    from mmseg.registry import DATASETS
    cfg = Config.fromfile(DIGITS)  # imports the dataset class (custom_imports)
    for split in ('train', 'val', 'test'):
        dataset = DATASETS.build(dict(cfg[f'{split}_dataloader'].dataset, lazy_init=True))
        assert tuple(dataset.metainfo['classes']) == SEG_CLASSES
        assert [list(c) for c in dataset.metainfo['palette']] == SEG_PALETTE
        assert type(dataset).METAINFO['classes'] == SEG_CLASSES  # what browse tools read
    assert cfg.model.decode_head.num_classes == len(SEG_CLASSES)
    assert cfg.model.test_cfg == dict(mode='whole')


def largest_intermediate(module, x):
    """tests/test_models/test_attention.py's helper."""
    from conftest import ROOT, load_module
    test_attention = load_module(osp.join(ROOT, 'tests/test_models/test_attention.py'))
    return test_attention.largest_intermediate(module, x)


@pytest.mark.slow
def test_full_resolution_backbone_has_linear_memory():
    """A 1024x2048 image through XFormer-S: no N×N map. The stride-8 XF stage unfolds its 128x256
    map into 4 sequences of N = 8192 tokens; self-attention would hold 4 heads x 4 sequences x N²
    = 1.07e9 scores per layer. The largest tensor (a conv activation) grows linearly with the
    pixels."""
    model = XFormer('small', out_indices=(1, 2, 3, 4)).eval()
    full = largest_intermediate(model, torch.rand(1, 3, 1024, 2048))
    quarter = largest_intermediate(model, torch.rand(1, 3, 512, 1024))
    tokens = 128 * 256 // 4
    attention_scores = 4 * 4 * tokens**2
    print(f'largest intermediate at 1024x2048: {full / 1e6:.1f} M elements (x{full / quarter:.2f} '
          f'of 512x1024); self-attention scores of the stride-8 stage: {attention_scores / 1e6:.0f}'
          ' M')
    assert full == pytest.approx(4 * quarter, rel=0.01)
    assert full < attention_scores / 10


TINY_RUN = [
    'train_cfg.max_iters=2', 'train_cfg.val_interval=2', 'default_hooks.checkpoint.interval=2',
    'train_dataloader.batch_size=2', *(f'{split}_dataloader.{key}'
                                       for split in ('train', 'val', 'test')
                                       for key in ('num_workers=0', 'persistent_workers=False')),
    'default_hooks.visualization.interval=1'
]


@pytest.mark.slow
def test_digits_train_two_iterations_then_test_with_overlays(run_tool, tiny_seg, tmp_path):
    work_dir = tmp_path / 'work'
    result = run_tool(
        'train.py',
        DIGITS,
        '--work-dir',
        str(work_dir),
        '--cfg-options',
        *data_options(tiny_seg),
        *TINY_RUN,
        cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert 'Iter(train) [2/2]' in output
    assert 'mIoU' in output and 'Iter(val) [2/2]' in output
    checkpoint = (work_dir / 'last_checkpoint').read_text().strip()
    assert osp.basename(checkpoint) == 'iter_2.pth'

    result = run_tool(
        'test.py',
        DIGITS,
        checkpoint,
        '--work-dir',
        str(work_dir),
        '--show-dir',
        'shown',
        '--cfg-options',
        *data_options(tiny_seg),
        *TINY_RUN,
        cwd=tmp_path)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    metrics = result.stdout.strip().splitlines()[-1]
    assert "'mIoU'" in metrics and "'aAcc'" in metrics
    overlays = list(work_dir.glob('**/shown/**/*.png'))
    assert len(overlays) == 2
    overlay = cv2.imread(str(overlays[0]))
    assert overlay.shape[:2] == (128, 512)  # ground truth and prediction side by side
    assert len(np.unique(overlay.reshape(-1, 3), axis=0)) > 1


def test_missing_label_map_is_named(damaged_seg):
    label = next((damaged_seg / 'gtFine' / 'val').glob(f'*/*{LABEL_SUFFIX}'))
    label.unlink()
    with pytest.raises(FileNotFoundError, match='without a label map') as error:
        check_dataset_config(digits_config(damaged_seg))
    assert str(label) in str(error.value)


def test_label_values_outside_the_classes_are_named(damaged_seg):
    label = next((damaged_seg / 'gtFine' / 'train').glob(f'*/*{LABEL_SUFFIX}'))
    labels = cv2.imread(str(label), cv2.IMREAD_UNCHANGED)
    labels[0, :3] = (11, 12, 200)
    cv2.imwrite(str(label), labels)
    with pytest.raises(ValueError, match=r'outside \[0, 11\)') as error:
        check_dataset_config(digits_config(damaged_seg))
    assert f'{label} [11, 12, 200]' in str(error.value)


def test_train_reports_a_missing_label_map_before_building_the_runner(run_tool, damaged_seg,
                                                                      tmp_path):
    label = next((damaged_seg / 'gtFine' / 'train').glob(f'*/*{LABEL_SUFFIX}'))
    label.unlink()
    result = run_tool(
        'train.py',
        DIGITS,
        '--work-dir',
        str(tmp_path / 'work'),
        '--cfg-options',
        *data_options(damaged_seg),
        cwd=tmp_path)
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    # one line, as every data-check failure of tools/train.py: no traceback
    assert last_line.startswith('error: ') and str(label) in last_line
    assert 'Traceback' not in result.stderr


def test_benchmark_reads_the_test_size_and_runs_without_data(load_tool, run_tool, tmp_path):
    benchmark_seg = load_tool('analysis_tools/benchmark_seg.py')
    assert benchmark_seg.test_size(Config.fromfile(CITYSCAPES)) == (1024, 2048)
    assert benchmark_seg.test_size(Config.fromfile(DIGITS)) == (128, 256)

    result = run_tool(
        'analysis_tools/benchmark_seg.py',
        DIGITS,
        '--shape',
        '64',
        '128',
        '--num-images',
        '2',
        '--num-warmup',
        '0',
        '--repeat-times',
        '2',
        '--device',
        'cpu',
        '--cfg-options',
        f'test_dataloader.dataset.data_root={tmp_path}/none',
        cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert '64x128 (HxW) random input, random weights' in lines[0]
    assert lines[1].startswith('Device: ') and 'threads' in lines[1]
    assert lines[-1].startswith('Overall: ') and lines[-1].endswith(' img/s')
