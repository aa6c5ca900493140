import json
import os
import os.path as osp
import pickle

import pytest
from conftest import ROOT

pytestmark = pytest.mark.needs('mmdet')

DIGITS = osp.join(ROOT, 'configs', 'xformer_yolov3_digits.py')
VAL_ANN = 'annotations/instances_val2017.json'


def data_options(root):
    return [
        '--cfg-options', f'train_dataloader.dataset.data_root={root}',
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


class CreatesFile:
    """Unpickled, creates the file ``path``: the payload of a code-running pickle."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, 'w')


@pytest.mark.parametrize('tool, options, prefix', [
    ('misc/verify_dataset.py', [], 'verify_dataset:'),
    ('train.py', ['--work-dir', 'work'], 'error:'),
])
def test_a_code_running_annotation_pickle_is_refused_before_it_runs(run_tool, tiny_sets, tmp_path,
                                                                    tool, options, prefix):
    # An OpenMMLab 2.0 annotation file (mmdet's BaseDetDataset reads it with mmengine.load, that
    # is pickle.load) whose payload would create the marker.
    marker = tmp_path / 'payload-ran'
    ann_file = tmp_path / 'ann.pkl'
    ann_file.write_bytes(pickle.dumps(dict(metainfo={}, data_list=[CreatesFile(marker)])))
    config = tmp_path / 'pickled_annotations.py'
    config.write_text(f'_base_ = {DIGITS!r}\ntrain_dataloader = dict(dataset=dict(dataset=dict('
                      f'type="BaseDetDataset", data_root={str(tiny_sets["det"])!r}, '
                      f'ann_file={str(ann_file)!r})))\n')
    result = run_tool(
        tool, str(config), *options, cwd=tmp_path, env=dict(os.environ, PYTHONWARNINGS='ignore'))
    assert not marker.exists()
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].endswith(
        f'{ann_file} needs io.open to be unpickled, which could run code: mmxformer unpickles '
        'data set files with only builtins and numpy allowed; re-save it as JSON '
        '(mmengine.dump(data, "ann.json")), or as a pickle of only dicts, lists, tuples, '
        'strings, numbers and numpy arrays')
    assert lines == [f'{prefix} {lines[-1].partition(" ")[2]}']  # one line: no traceback
