"""tools/train.py and tools/test.py refuse, before they train or evaluate, what would give a wrong
result silently or overwrite an earlier one."""
import os.path as osp

import pytest
import torch

from mmxformer.cli import UsageError
from mmxformer.utils.config import build_model, load_config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DETECTOR = osp.join(ROOT, 'configs/xformer_yolov3_digits.py')
CLASSIFIER = osp.join(ROOT, 'configs/xformer-xxs_digits.py')
SMALL = ['model.backbone.arch=xxsmall', 'model.neck.in_channels=[80,64,48]']


def data_options(root):
    ann = osp.join(root, 'annotations/instances_val2017.json')
    return [
        *SMALL, f'train_dataloader.dataset.dataset.data_root={root}',
        f'val_dataloader.dataset.data_root={root}', f'test_dataloader.dataset.data_root={root}',
        f'val_evaluator.ann_file={ann}', f'test_evaluator.ann_file={ann}',
        'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False'
    ]


@pytest.fixture
def runs(monkeypatch):
    """Runner.train and Runner.test record their runner instead of training or evaluating."""
    from mmengine.runner import Runner
    started = []
    monkeypatch.setattr(Runner, 'train', lambda runner: started.append(('train', runner)))
    monkeypatch.setattr(Runner, 'test', lambda runner: started.append(('test', runner)) or {})
    return started


def save_model(config, path):
    cfg = load_config(
        config, None if config == CLASSIFIER else {
            'model.backbone.arch': 'xxsmall',
            'model.neck.in_channels': [80, 64, 48]
        })
    torch.save(dict(state_dict=build_model(cfg).state_dict(), meta=dict()), path)
    return str(path)


@pytest.fixture(scope='module')
def train(load_tool):
    return load_tool('train.py').main


@pytest.fixture(scope='module')
def test(load_tool):
    return load_tool('test.py').main


def test_checkpoint_that_does_not_fit_stops_before_evaluation(test, tiny_sets, tmp_path, runs):
    classifier = save_model(CLASSIFIER, tmp_path / 'cls.pth')
    options = data_options(str(tiny_sets['det']))
    with pytest.raises(UsageError, match=rf'nothing evaluated: .*{classifier}'):
        test(
            [DETECTOR, classifier, '--work-dir',
             str(tmp_path / 'work'), '--cfg-options', *options])
    assert runs == []

    detector = save_model(DETECTOR, tmp_path / 'det.pth')
    test([DETECTOR, detector, '--work-dir', str(tmp_path / 'work'), '--cfg-options', *options])
    assert [kind for kind, _ in runs] == ['test']


def test_test_split_is_checked_before_the_runner(test, copy_set, tmp_path, runs):
    root = copy_set('det')
    image = sorted((root / 'val2017').iterdir())[0]
    image.unlink()
    checkpoint = save_model(DETECTOR, tmp_path / 'det.pth')
    argv = [
        DETECTOR, checkpoint, '--work-dir',
        str(tmp_path / 'work'), '--cfg-options', *data_options(str(root))
    ]
    with pytest.raises(FileNotFoundError, match=str(image)):
        test(argv)
    assert runs == []
    test([*argv, '--skip-data-check'])
    assert [kind for kind, _ in runs] == ['test']


def test_only_the_test_split_is_checked(test, copy_set, tmp_path, runs):
    root = copy_set('det')
    (root / 'annotations/instances_train2017.json').write_text('{')  # not read by a test run
    checkpoint = save_model(DETECTOR, tmp_path / 'det.pth')
    test([
        DETECTOR, checkpoint, '--work-dir',
        str(tmp_path / 'work'), '--cfg-options', *data_options(str(root))
    ])
    assert [kind for kind, _ in runs] == ['test']


def test_existing_results_file_needs_overwrite(test, tiny_sets, tmp_path, runs):
    out = tmp_path / 'results.pkl'
    out.write_bytes(b'earlier results')
    checkpoint = save_model(DETECTOR, tmp_path / 'det.pth')
    argv = [
        DETECTOR, checkpoint, '--work-dir',
        str(tmp_path / 'work'), '--out',
        str(out), '--cfg-options', *data_options(str(tiny_sets['det']))
    ]
    with pytest.raises(UsageError, match='exists; pass --overwrite'):
        test(argv)
    assert runs == [] and out.read_bytes() == b'earlier results'
    test([*argv, '--overwrite'])
    assert [kind for kind, _ in runs] == ['test']


def test_work_dir_of_an_earlier_run_needs_resume_or_overwrite(train, tiny_sets, tmp_path, runs):
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    (work_dir / 'epoch_4.pth').write_bytes(b'earlier run')
    argv = [
        DETECTOR, '--work-dir',
        str(work_dir), '--cfg-options', *data_options(str(tiny_sets['det']))
    ]
    with pytest.raises(UsageError, match='epoch_4.pth.*--resume.*--work-dir.*--overwrite'):
        train(argv)
    assert runs == []
    train([*argv, '--overwrite'])
    assert [kind for kind, _ in runs] == ['train']


def test_resume_with_nothing_to_resume_says_so(train, tiny_sets, tmp_path, runs, capsys):
    work_dir = tmp_path / 'work'
    train([
        DETECTOR, '--work-dir',
        str(work_dir), '--resume', '--cfg-options', *data_options(str(tiny_sets['det']))
    ])
    printed = capsys.readouterr().out
    assert f'no checkpoint found in the work dir {work_dir}' in printed
    assert 'training starts from scratch' in printed
    (kind, runner), = runs
    assert kind == 'train' and not runner._resume and runner._load_from is None


def test_resume_from_weights_only_is_refused(train, tiny_sets, tmp_path, runs):
    published = save_model(DETECTOR, tmp_path / 'published.pth')
    with pytest.raises(UsageError, match='no training state.*load_from'):
        train([
            DETECTOR, '--work-dir',
            str(tmp_path / 'work'), '--resume', published, '--cfg-options',
            *data_options(str(tiny_sets['det']))
        ])
    assert runs == []


def test_work_dir_naming_a_file_is_one_line(run_tool, test, tmp_path):
    blocker = tmp_path / 'a_file'
    blocker.write_text('')
    message = f'work_dir {blocker}/work: {blocker} is a file, not a directory'
    result = run_tool('train.py', DETECTOR, '--work-dir', str(blocker / 'work'), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f'error: {message}'
    assert 'Traceback' not in result.stderr
    with pytest.raises(UsageError, match=message):
        test([DETECTOR, __file__, '--work-dir', str(blocker / 'work')])
