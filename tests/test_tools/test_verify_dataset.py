import json
import os.path as osp

import pytest
from conftest import ROOT

pytestmark = pytest.mark.needs('mmdet')

DIGITS = osp.join(ROOT, 'configs', 'xformer_yolov3_digits.py')
VAL_ANN = 'annotations/instances_val2017.json'


def data_options(root):
    return [
        '--cfg-options', f'train_dataloader.dataset.dataset.data_root={root}',
        f'val_dataloader.dataset.data_root={root}', f'test_dataloader.dataset.data_root={root}'
    ]


def test_prints_a_line_per_dataset(load_tool, tiny_sets, capsys):
    root = tiny_sets['det']
    load_tool('misc/verify_dataset.py').main([DIGITS, '--max-scan', '2', *data_options(root)])
    lines = [
        line for line in capsys.readouterr().out.splitlines()
        if line.startswith(('train:', 'val:', 'test:'))
    ]
    assert lines == [
        f'train: CocoDataset {root}: 6 images, 2 checked',
        f'val: CocoDataset {root}: 3 images, 2 checked'
    ]  # test: the val set


def test_checks_only_the_splits_asked_for(load_tool, copy_set, capsys):
    root = copy_set('det')
    (root / 'train2017' / '000000000004.jpg').unlink()
    verify_dataset = load_tool('misc/verify_dataset.py')
    assert verify_dataset.main([DIGITS, '--splits', 'test', *data_options(root)
                                ]) == [f'test: CocoDataset {root}: 3 images (all checked)']
    with pytest.raises(
            SystemExit,
            match=f"verify_dataset: missing images listed in "
            f"{root / 'annotations/instances_train2017.json'} \\(1\\): "
            f"{root / 'train2017' / '000000000004.jpg'}"):
        verify_dataset.main([DIGITS, *data_options(root)])


def test_a_wrong_set_exits_1_with_a_message_that_names_it(run_tool, copy_set, tmp_path):
    root = copy_set('det')
    coco = json.loads((root / VAL_ANN).read_text())
    coco['annotations'][0]['bbox'] = [150, 150, 40, 40]
    (root / VAL_ANN).write_text(json.dumps(coco))
    result = run_tool(
        'misc/verify_dataset.py', DIGITS, '--splits', 'val', *data_options(root), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(
        f'verify_dataset: annotations of {root / VAL_ANN} whose bbox is not')


def test_max_scan_must_be_positive(load_tool, capsys):
    with pytest.raises(SystemExit):
        load_tool('misc/verify_dataset.py').parse_args([DIGITS, '--max-scan', '0'])
    assert '0 is not a positive number' in capsys.readouterr().err
