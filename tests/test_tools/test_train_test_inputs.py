"""tools/train.py and tools/test.py refuse, before they train or evaluate, what would give a wrong
result silently or overwrite an earlier one."""
import errno
import os
import os.path as osp
from pathlib import Path

import pytest
import torch
from conftest import digits_options, load_module
from mmengine.hooks import CheckpointHook

from mmxformer.cli import UsageError, lock_work_dir
from mmxformer.engine import ATOMIC_LOCAL_BACKEND
from mmxformer.utils.config import build_model, load_config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DETECTOR = osp.join(ROOT, 'configs/xformer_yolov3_digits.py')
CLASSIFIER = osp.join(ROOT, 'configs/xformer-xxs_digits.py')
SELF_ATTENTION = osp.join(ROOT, 'configs/xformer-xxs-sa_digits.py')
SMALL = ['model.backbone.arch=xxsmall', 'model.neck.in_channels=[80,64,48]']


def data_options(root):
    ann = osp.join(root, 'annotations/instances_val2017.json')
    return [
        *SMALL, f'train_dataloader.dataset.data_root={root}',
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


def save_model(config, path, options=None, **checkpoint):
    cfg = load_config(
        config, None if config == CLASSIFIER else {
            'model.backbone.arch': 'xxsmall',
            'model.neck.in_channels': [80, 64, 48],
            **(options or {})
        })
    torch.save(dict(state_dict=build_model(cfg).state_dict(), **{'meta': {}, **checkpoint}), path)
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
    with pytest.raises(UsageError, match=str(image)):
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


def test_a_work_dir_in_use_by_another_training_is_refused(train, tiny_sets, tmp_path, runs):
    work_dir = tmp_path / 'work'
    argv = [
        DETECTOR, '--work-dir',
        str(work_dir), '--cfg-options', *data_options(str(tiny_sets['det']))
    ]
    with lock_work_dir(str(work_dir)):  # another training, started a moment before
        with pytest.raises(
                UsageError,
                match=rf'work_dir {work_dir} is in use by another '
                rf'training \(pid {os.getpid()} on .*\).*--work-dir DIR'):
            train(argv)
    assert runs == []
    train(argv)
    (kind, runner), = runs
    hook, = [hook for hook in runner.hooks if isinstance(hook, CheckpointHook)]
    assert hook.backend_args == dict(backend=ATOMIC_LOCAL_BACKEND)  # whole checkpoints only


def test_load_from_another_model_is_refused_before_training(train, tiny_sets, tmp_path, runs,
                                                            capsys):
    classifier = save_model(CLASSIFIER, tmp_path / 'cls.pth')
    det_options = data_options(str(tiny_sets['det']))
    argv = [DETECTOR, '--work-dir', str(tmp_path / 'det'), '--cfg-options', *det_options]
    with pytest.raises(
            UsageError,
            match=rf'^nothing trained: load_from={classifier}: the '
            r'checkpoint does not fit YOLOV3: 327 of its 433 .*\nMissing \(106\)'):
        train([*argv, f'load_from={classifier}'])
    cls_options = [
        f'{key}={value}' for key, value in digits_options('cls', tiny_sets['cls']).items()
    ]
    with pytest.raises(
            UsageError,
            match=r"(?s)^nothing trained: load_from=.*Not in "
            r"ImageClassifier \(\d+\): .*context_weight"):  # XFA weights into SA
        train([
            SELF_ATTENTION, '--work-dir',
            str(tmp_path / 'sa'), '--cfg-options', *cls_options, f'load_from={classifier}'
        ])
    assert runs == []
    # a detector of other classes: the usual fine-tuning, whose head starts afresh
    other_classes = save_model(DETECTOR, tmp_path / 'det3.pth', {'model.bbox_head.num_classes': 3})
    train([*argv, f'load_from={other_classes}'])
    assert [kind for kind, _ in runs] == ['train']
    assert (f'load_from={other_classes}: 6 weights of the head have other shapes than in the '
            'checkpoint (bbox_head.convs_pred.0.weight, ') in capsys.readouterr().out


def test_resume_from_another_model_is_refused(train, tiny_sets, tmp_path, runs):
    classifier = save_model(
        CLASSIFIER, tmp_path / 'cls.pth', meta=dict(epoch=1, iter=2), optimizer=dict(state={}))
    with pytest.raises(
            UsageError,
            match=rf'^nothing trained: --resume {classifier}: the '
            'checkpoint does not fit YOLOV3'):
        train([
            DETECTOR, '--work-dir',
            str(tmp_path / 'work'), '--resume', classifier, '--cfg-options',
            *data_options(str(tiny_sets['det']))
        ])
    assert runs == []


@pytest.fixture(scope='module')
def mounted_tmpfs():
    return load_module(osp.join(ROOT, 'tests/test_engine/test_atomic_files.py')).mounted_tmpfs


def test_results_on_a_full_disk_keep_the_earlier_ones(test, tiny_sets, tmp_path, mounted_tmpfs):
    checkpoint = save_model(DETECTOR, tmp_path / 'det.pth')
    with mounted_tmpfs(tmp_path / 'disk', 'size=256k') as disk:
        out = disk / 'results.pkl'
        out.write_bytes(b'earlier results')
        with open(disk / 'filler', 'wb') as f:  # leave 2 KiB: less than 3 images' predictions
            stat = os.statvfs(disk)
            f.write(b'\0' * (stat.f_bavail * stat.f_frsize - 2048))
        with pytest.raises(OSError) as error:
            test([
                DETECTOR, checkpoint, '--work-dir',
                str(tmp_path / 'work'), '--out',
                str(out), '--overwrite', '--cfg-options', *data_options(str(tiny_sets['det']))
            ])
        assert (error.value.errno, error.value.filename) == (errno.ENOSPC, str(out))
        assert out.read_bytes() == b'earlier results'
        assert sorted(os.listdir(disk)) == ['filler', 'results.pkl']


@pytest.mark.slow
def test_a_training_that_cannot_save_leaves_no_partial_checkpoint(run_tool, tiny_sets, tmp_path,
                                                                  mounted_tmpfs):
    with mounted_tmpfs(tmp_path / 'disk', 'size=8m') as work_dir:  # the checkpoint is 28 MB
        result = run_tool('train.py', DETECTOR, '--work-dir', str(work_dir), '--cfg-options',
                          *data_options(str(tiny_sets['det'])), 'train_cfg.max_epochs=1',
                          'train_dataloader.num_workers=0',
                          'train_dataloader.persistent_workers=False',
                          'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False')
        assert result.returncode == 1, result.stderr[-3000:]
        assert result.stderr.strip().splitlines()[-1] == (
            f'error: {work_dir}/epoch_1.pth: No space left on device')
        left = [name for name in os.listdir(work_dir) if not osp.isdir(work_dir / name)]
        assert left == ['xformer_yolov3_digits.py']  # no epoch_1.pth, nor its temporary file


def test_read_only_disks_are_one_line(train, test, tiny_sets, tmp_path, runs, mounted_tmpfs):
    checkpoint = save_model(DETECTOR, tmp_path / 'det.pth')
    options = ['--cfg-options', *data_options(str(tiny_sets['det']))]
    with mounted_tmpfs(tmp_path / 'ro', 'ro', 'size=64k') as disk:
        message = rf'no file can be created in {disk} \(Read-only file system\)'
        with pytest.raises(UsageError, match=rf'^work_dir {disk}/work: {message}'):
            train([DETECTOR, '--work-dir', str(disk / 'work'), *options])
        with pytest.raises(UsageError, match=rf'^--out {disk}/r.pkl: {message}'):
            test([
                DETECTOR, checkpoint, '--work-dir',
                str(tmp_path / 'work'), '--out',
                str(disk / 'r.pkl'), *options
            ])
    assert runs == []


@pytest.mark.parametrize('tool, argv, message', [
    ('train', ['no/such/config.py'], 'Config file no/such/config.py does not exist'),
    ('train', ['{other_scope}'], "has default_scope='mmdet3d'; tools/train.py and tools/test.py"),
    ('train', [DETECTOR, '--cfg-options', 'modle.backbone.arch=xxsmall'], "'modle' \\(did you"),
    ('train', [DETECTOR, '--cfg-options', 'model.backbone.arhc=xxsmall'], 'has no argument'),
    ('train', [DETECTOR, '--resume', '{partial}'], '--resume: .* is not a readable PyTorch'),
    ('test', [DETECTOR, 'no/such.pth'], 'checkpoint no/such.pth: no such file'),
    ('test', [DETECTOR, '{partial}', '--out', 'results.json'], '--out must be a .pkl'),
    ('train', [DETECTOR, '--cfg-options', 'max_epochs=1'], 'the runner does not read max_epochs'
     r'.*its value went to train_cfg.max_epochs, '),
    ('train', [DETECTOR, '--launcher', 'pytorch'], '--launcher pytorch: RANK is not set, so this '
     r'process was not started by torchrun'),
    ('train', [DETECTOR, '--work-dir', ''], '^work_dir: the path is empty'),
    ('test', [
        DETECTOR, '{partial}', '--show-dir', 'shown', '--cfg-options',
        'default_hooks.visualization=None'
    ], '--show-dir needs default_hooks.visualization'),
])
def test_careless_command_lines_are_one_line(train, test, tmp_path, runs, monkeypatch, tool, argv,
                                             message):
    monkeypatch.delenv('RANK', raising=False)
    other_scope = tmp_path / 'other_scope.py'
    other_scope.write_text("default_scope = 'mmdet3d'\nmodel = dict(type='X')\n")
    partial = tmp_path / 'epoch_2.pth'  # a run was killed while it saved
    if '{partial}' in argv:
        partial.write_bytes(Path(save_model(CLASSIFIER, tmp_path / 'c.pth')).read_bytes()[:1000])
    argv = [arg.format(other_scope=other_scope, partial=partial) for arg in argv]
    if '--work-dir' not in argv:
        argv += ['--work-dir', str(tmp_path / 'work')]
    with pytest.raises(UsageError, match=message):
        dict(train=train, test=test)[tool](argv)
    assert runs == []


def test_a_partial_checkpoint_to_evaluate_is_one_line(test, tiny_sets, tmp_path, runs):
    partial = tmp_path / 'epoch_2.pth'
    partial.write_bytes(Path(save_model(DETECTOR, tmp_path / 'det.pth')).read_bytes()[:100000])
    with pytest.raises(UsageError, match=rf'^nothing evaluated: {partial} is not a readable'):
        test([
            DETECTOR,
            str(partial), '--work-dir',
            str(tmp_path / 'work'), '--cfg-options', *data_options(str(tiny_sets['det']))
        ])
    assert runs == []
