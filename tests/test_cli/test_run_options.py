"""What tools/train.py and tools/test.py options change, and the checks of the paths they write."""
import argparse
import errno
import os
import os.path as osp
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config

from mmxformer.cli import (CfgOptionsAction, UsageError, check_fresh_work_dir, check_output_file,
                           check_start_checkpoint, check_writable_dir, enable_dump, enable_resume,
                           exit_on_usage_error, lock_work_dir, write_checkpoints_atomically)
from mmxformer.engine import ATOMIC_LOCAL_BACKEND


def save(path, **checkpoint):
    torch.save(dict(state_dict=dict(w=torch.zeros(2)), **checkpoint), path)
    return str(path)


def run_checkpoint(path, epoch=1):
    return save(path, meta=dict(epoch=epoch, iter=2 * epoch), optimizer=dict(state={}))


def test_resume_with_nothing_to_resume_changes_nothing(tmp_path):
    cfg = Config(dict(work_dir=str(tmp_path), resume=False, load_from=None))
    assert enable_resume(cfg, 'auto') is None
    assert (cfg.resume, cfg.load_from) == (False, None)


def test_resume_finds_the_last_checkpoint(tmp_path):
    checkpoint = run_checkpoint(tmp_path / 'epoch_1.pth')
    (tmp_path / 'last_checkpoint').write_text(checkpoint)
    cfg = Config(dict(work_dir=str(tmp_path)))
    assert enable_resume(cfg, 'auto') == checkpoint
    assert (cfg.resume, cfg.load_from) == (True, checkpoint)


def test_resume_without_last_checkpoint_names_the_checkpoints(tmp_path):
    for epoch in (2, 10):
        run_checkpoint(tmp_path / f'epoch_{epoch}.pth', epoch)
    with pytest.raises(UsageError, match=f'--resume {tmp_path}/epoch_10.pth'):
        enable_resume(Config(dict(work_dir=str(tmp_path))), 'auto')


@pytest.mark.parametrize('content, missing', [
    (dict(), 'meta.epoch, meta.iter, optimizer'),
    (dict(meta=dict(epoch=1, iter=2)), 'optimizer'),
    (dict(meta=dict(hash='x'), optimizer={}), 'meta.epoch, meta.iter'),
])
def test_resume_from_weights_only_is_refused(tmp_path, content, missing):
    checkpoint = save(tmp_path / 'published.pth', **content)
    cfg = Config(dict(work_dir=str(tmp_path / 'work')))
    with pytest.raises(UsageError, match=f'no training state \\(no {missing}\\).*load_from'):
        enable_resume(cfg, checkpoint)
    assert 'resume' not in cfg


def test_resume_from_a_missing_file_is_refused(tmp_path):
    with pytest.raises(UsageError, match='no such file'):
        enable_resume(Config(dict(work_dir=str(tmp_path))), str(tmp_path / 'nothing.pth'))


def test_work_dir_of_an_earlier_run_is_refused(tmp_path):
    check_fresh_work_dir(str(tmp_path / 'new'))
    (tmp_path / 'best_coco_bbox_mAP_epoch_1.pth').write_bytes(b'')
    (tmp_path / 'scalars.json').write_text('{}')
    check_fresh_work_dir(str(tmp_path))  # nothing a new run would overwrite
    (tmp_path / 'iter_500.pth').write_bytes(b'')
    with pytest.raises(UsageError, match='iter_500.pth.*--resume.*--work-dir.*--overwrite'):
        check_fresh_work_dir(str(tmp_path))


def test_directory_that_cannot_be_made_is_named(tmp_path):
    check_writable_dir(str(tmp_path / 'a' / 'b'), '--work-dir')
    assert os.listdir(tmp_path) == []  # nothing made, no probe left
    (tmp_path / 'file').write_text('')
    for path in (tmp_path / 'file', tmp_path / 'file' / 'sub'):
        with pytest.raises(UsageError, match=f'--work-dir: {tmp_path}/file is a file'):
            check_writable_dir(str(path), '--work-dir')


@pytest.mark.skipif(not osp.isdir('/proc/self'), reason='needs /proc')
def test_directory_under_proc_is_refused():
    with pytest.raises(UsageError, match='no file can be created in /proc'):
        check_writable_dir('/proc/out', '--out /proc/out/model.onnx')


def test_output_file_is_never_replaced_silently(tmp_path):
    out = tmp_path / 'results.pkl'
    check_output_file(str(out), '--out')
    out.write_bytes(b'earlier results')
    with pytest.raises(UsageError, match='exists; pass --overwrite'):
        check_output_file(str(out), '--out')
    check_output_file(str(out), '--out', overwrite=True)
    with pytest.raises(UsageError, match='is a directory'):
        check_output_file(str(tmp_path), '--out', overwrite=True)
    with pytest.raises(UsageError, match='results.pkl is a file, not a directory'):
        check_output_file(str(out / 'x.pkl'), '--out')


def test_resume_never_recommends_a_partial_checkpoint(tmp_path):
    whole = Path(run_checkpoint(tmp_path / 'epoch_1.pth')).read_bytes()
    (tmp_path / 'epoch_2.pth').write_bytes(whole[:len(whole) // 2])  # killed while it saved
    cfg = Config(dict(work_dir=str(tmp_path)))
    for lacking in ('no last_checkpoint', 'an empty last_checkpoint'):
        expected = rf'but {lacking}; epoch_2.pth is not whole .*: --resume {tmp_path}/epoch_1.pth$'
        with pytest.raises(UsageError, match=expected):
            enable_resume(cfg, 'auto')
        (tmp_path / 'last_checkpoint').write_text('')  # mmengine writes it in place
    with pytest.raises(UsageError, match='^--resume: .*epoch_2.pth is not a readable PyTorch'):
        enable_resume(cfg, str(tmp_path / 'epoch_2.pth'))


@pytest.mark.parametrize('code, strerror', [(errno.ENOSPC, 'No space left on device'),
                                            (errno.EROFS, 'Read-only file system'),
                                            (errno.EACCES, 'Permission denied')])
def test_disk_errors_end_in_one_line(code, strerror):

    def main():
        raise OSError(code, strerror, '/disk/epoch_1.pth')

    with pytest.raises(SystemExit) as exit:
        exit_on_usage_error(main)
    assert exit.value.code == f'error: /disk/epoch_1.pth: {strerror}'


def test_other_errors_are_not_hidden():
    for error in (OSError(errno.EIO, 'Input/output error'), KeyError('x')):
        with pytest.raises(type(error)):
            exit_on_usage_error(lambda: (_ for _ in ()).throw(error))


def test_a_work_dir_is_owned_by_one_run(tmp_path, monkeypatch):
    work_dir = str(tmp_path / 'work')
    with lock_work_dir(work_dir):
        with pytest.raises(
                UsageError,
                match=rf'work_dir {work_dir} is in use by another training \(pid {os.getpid()} '
                r'on .*\).*wait until it ends, or pass --work-dir'):
            with lock_work_dir(work_dir):
                pass
        # a distributed run locks once, in rank 0: the other ranks pass
        monkeypatch.setenv('RANK', '1')
        with lock_work_dir(work_dir, 'pytorch'):
            pass
        monkeypatch.setenv('RANK', '0')
        with pytest.raises(UsageError, match='in use by another training'):
            with lock_work_dir(work_dir, 'pytorch'):
                pass
    assert not osp.exists(work_dir)  # made for the lock, left empty: removed


def test_what_a_run_killed_while_it_saved_left_is_removed(tmp_path, capsys):
    for name in ('.epoch_3.pth.ab_d1234.tmp', 'epoch_2.pth', '.notes.tmp', 'last_checkpoint'):
        (tmp_path / name).write_bytes(b'')
    with lock_work_dir(str(tmp_path)):
        assert sorted(os.listdir(tmp_path)) == [
            '.notes.tmp', '.train.lock', 'epoch_2.pth', 'last_checkpoint'
        ]
    assert f'removed {tmp_path}/.epoch_3.pth.ab_d1234.tmp' in capsys.readouterr().out


def test_checkpoints_are_written_atomically_where_they_are_local_files():
    cfg = Config(dict(default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1))))
    write_checkpoints_atomically(cfg)
    assert cfg.default_hooks.checkpoint.backend_args == dict(backend=ATOMIC_LOCAL_BACKEND)
    for hook in (dict(out_dir='s3://bucket/run'), dict(backend_args=dict(backend='petrel'))):
        cfg = Config(dict(default_hooks=dict(checkpoint=dict(type='CheckpointHook', **hook))))
        write_checkpoints_atomically(cfg)
        assert cfg.default_hooks.checkpoint == dict(type='CheckpointHook', **hook)
    write_checkpoints_atomically(Config(dict()))  # no hook: nothing to do


@pytest.mark.needs('mmdet')
def test_predictions_are_dumped_atomically():
    cfg = Config(dict(default_scope='mmdet', test_evaluator=dict(type='CocoMetric')))
    enable_dump(cfg, 'results.pkl')
    assert cfg.test_evaluator == [
        dict(type='CocoMetric'),
        dict(type='AtomicDump', dump=dict(type='DumpDetResults', out_file_path='results.pkl'))
    ]
    with pytest.raises(UsageError, match='--out must be a .pkl or .pickle file'):
        enable_dump(cfg, 'results.json')


class Toy(nn.Module):

    def __init__(self, classes=3, depth=1):
        super().__init__()
        self.backbone = nn.Sequential(*[nn.Linear(4, 4) for _ in range(depth)])
        self.bbox_head = nn.Linear(4, classes)


def start_from(tmp_path, checkpoint, model=None, resume=False):
    path = str(tmp_path / 'start.pth')
    torch.save(dict(state_dict=checkpoint.state_dict()), path)
    check_start_checkpoint(model or Toy(), Config(dict(load_from=path, resume=resume)))
    return path


def test_a_run_starts_only_from_a_checkpoint_that_fits(tmp_path, capsys):
    start_from(tmp_path, Toy())
    with pytest.raises(
            UsageError,
            match=r'nothing trained: load_from=.*start.pth: the checkpoint '
            r'does not fit Toy: 6 of its 8 .*\nMissing \(2\)'):
        start_from(tmp_path, Toy(depth=2), Toy(depth=3))  # another model
    with pytest.raises(UsageError, match=r'(?s)^nothing trained: load_from=.*Not in Toy \(2\)'):
        start_from(tmp_path, Toy(depth=2))
    # fine-tuning for other classes: the head's weights start from their initialisation
    path = start_from(tmp_path, Toy(classes=10))
    assert capsys.readouterr().out == (
        f'load_from={path}: 2 weights of the head have other shapes than in the checkpoint '
        '(bbox_head.weight, bbox_head.bias), as when fine-tuning for other classes; they start '
        'from their initialisation\n')
    with pytest.raises(UsageError, match=r'(?s)^nothing trained: --resume .*Other shapes \(2\)'):
        start_from(tmp_path, Toy(classes=10), resume=True)  # a resumed run goes on exactly


def test_a_checkpoint_saved_in_ddp_fits(tmp_path):
    path = tmp_path / 'ddp.pth'
    torch.save(dict(state_dict={f'module.{k}': v for k, v in Toy().state_dict().items()}), path)
    check_start_checkpoint(Toy(), Config(dict(load_from=str(path), resume=False)))
    check_start_checkpoint(Toy(), Config(dict(load_from=None)))  # nothing to check


def test_cfg_options_that_are_not_key_value_are_a_usage_error(capsys):
    parser = argparse.ArgumentParser(prog='train.py')
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction)
    assert parser.parse_args(['--cfg-options', 'a.b=1', 'c=[1,2]']).cfg_options == dict({'a.b': 1},
                                                                                        c=[1, 2])
    with pytest.raises(SystemExit) as exit:
        parser.parse_args(['--cfg-options', 'model.backbone.arch'])
    assert exit.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "train.py: error: argument --cfg-options: 'model.backbone.arch' is not KEY=VALUE (e.g. "
        'model.backbone.arch=xxsmall)')
