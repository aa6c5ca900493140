import json
import os.path as osp

import pytest
from mmengine.config import Config

from mmxformer.analysis.complexity import complexity
from mmxformer.data.digits import make_digits_det
from mmxformer.tasks import DetectionTask
from mmxformer.utils.config import build_model

pytestmark = pytest.mark.needs('mmdet')

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
COCO = osp.join(ROOT, 'configs/xformer_yolov3_coco.py')
MS416 = osp.join(ROOT, 'configs/xformer_yolov3_ms-416_coco.py')
DIGITS = osp.join(ROOT, 'configs/xformer_yolov3_digits.py')


def test_coco_config_matches_the_paper():
    model = build_model(Config.fromfile(COCO))
    params, flops = complexity(model, (320, 320), DetectionTask())
    print(f'YOLOv3-XFormer-S at 320x320: {params / 1e6:.2f} M parameters (paper 6.3 M), '
          f'{flops / 1e9:.2f} G FLOPs (paper 3.8 G)')
    assert abs(params / 6.3e6 - 1) < 0.03
    assert abs(flops / 3.8e9 - 1) < 0.10


@pytest.mark.parametrize('path', [COCO, MS416, DIGITS])
def test_neck_reads_the_backbone_channels(path):
    model = build_model(Config.fromfile(path))
    assert list(model.neck.in_channels) == list(reversed(model.backbone.out_channels))


def data_options(root):
    """Point the digits config at ``root``; keep every box of a barely trained model so that
    COCO evaluation has detections to score."""
    ann = osp.join(root, 'annotations/instances_val2017.json')
    return [
        'model.test_cfg.conf_thr=0', 'model.test_cfg.score_thr=0',
        f'train_dataloader.dataset.data_root={root}', f'val_dataloader.dataset.data_root={root}',
        f'test_dataloader.dataset.data_root={root}', f'val_evaluator.ann_file={ann}',
        f'test_evaluator.ann_file={ann}'
    ]


@pytest.mark.slow
def test_train_then_test_on_tiny_digits(run_tool, tmp_path):
    root = str(make_digits_det(tmp_path / 'digits', num_train=8, num_val=4, seed=1))
    work_dir = tmp_path / 'work'
    result = run_tool(
        'train.py',
        DIGITS,
        '--work-dir',
        str(work_dir),
        '--cfg-options',
        *data_options(root),
        'train_cfg.max_epochs=1',
        'train_cfg.val_interval=1',
        'train_dataloader.batch_size=4',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'val_dataloader.num_workers=0',
        'val_dataloader.persistent_workers=False',
        'default_hooks.checkpoint.interval=1',
        cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert 'Epoch(train) [1][2/2]' in result.stdout + result.stderr
    assert 'coco/bbox_mAP_50' in result.stdout + result.stderr
    checkpoint = (work_dir / 'last_checkpoint').read_text().strip()
    assert osp.basename(checkpoint) == 'epoch_1.pth'

    result = run_tool(
        'test.py',
        DIGITS,
        checkpoint,
        '--work-dir',
        str(work_dir),
        '--out',
        str(tmp_path / 'results.pkl'),
        '--show-dir',
        'shown',
        '--cfg-options',
        *data_options(root),
        'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False',
        cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = result.stdout.strip().splitlines()[-1]
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75'):
        assert f"'{key}'" in metrics
    assert (tmp_path / 'results.pkl').stat().st_size > 0
    assert len(list(work_dir.glob('*/shown/*'))) == 4


def test_missing_data_root_is_named(run_tool, tmp_path):
    missing = str(tmp_path / 'no_such_dir')
    result = run_tool(
        'train.py',
        DIGITS,
        '--work-dir',
        str(tmp_path / 'work'),
        '--cfg-options',
        *data_options(missing),
        cwd=tmp_path)
    assert result.returncode != 0
    assert missing in result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize('damage', ['annotation', 'image'])
def test_corrupted_files_are_named(run_tool, tmp_path, damage):
    root = make_digits_det(tmp_path / 'digits', num_train=4, num_val=2, seed=2)
    if damage == 'annotation':
        bad = root / 'annotations/instances_train2017.json'
        bad.write_text(bad.read_text()[:100])
    else:
        images = json.loads((root / 'annotations/instances_val2017.json').read_text())['images']
        bad = root / 'val2017' / images[0]['file_name']
        bad.write_bytes(b'not an image')
    result = run_tool(
        'train.py',
        DIGITS,
        '--work-dir',
        str(tmp_path / 'work'),
        '--cfg-options',
        *data_options(str(root)),
        cwd=tmp_path)
    assert result.returncode != 0
    assert str(bad) in result.stderr.strip().splitlines()[-1]
