"""What tools/train.py and tools/test.py options change, and the checks of the paths they write."""
import os
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from mmxformer.cli import (UsageError, check_fresh_work_dir, check_output_file, check_writable_dir,
                           enable_resume)


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
