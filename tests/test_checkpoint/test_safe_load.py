"""A file that is not a PyTorch checkpoint is named for what it is, by every loader, and nothing
suggests turning weights_only off."""
import io
import pickle
import zipfile

import pytest
import torch
from mmengine.runner.checkpoint import CheckpointLoader

import mmxformer  # noqa: F401 (installs the loaders)
from mmxformer.checkpoint.safe_load import NotACheckpointError, load_checkpoint_safely
from mmxformer.models import XFormer


def _zip(path):
    with zipfile.ZipFile(path, 'w') as archive:
        archive.writestr('readme.txt', 'not weights')


def _truncated(path):
    torch.save(dict(state_dict=dict(w=torch.zeros(1000))), path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


NOT_CHECKPOINTS = {
    'html': (lambda path: path.write_text('<!DOCTYPE html>\n<html>404</html>'), 'HTML'),
    'text':
    (lambda path: path.write_text('version https://git-lfs.github.com/spec/v1\n'), 'it is text'),
    'jpeg': (lambda path: path.write_bytes(b'\xff\xd8\xff\xe0\x00\x10JFIF\x00'), 'JPEG image'),
    'empty': (lambda path: path.write_bytes(b''), 'the file is empty'),
    'pickle': (lambda path: path.write_bytes(pickle.dumps(dict(a=1), protocol=4)),
               'a pickle, but not one written by torch.save'),
    'list': (lambda path: torch.save([1, 2], path), 'holds a list, not a checkpoint'),
    'tensor': (lambda path: torch.save(torch.zeros(2), path), 'holds a Tensor, not a checkpoint'),
    'zip': (_zip, 'not a readable PyTorch checkpoint'),
    'truncated': (_truncated, 'not a readable PyTorch checkpoint'),
}


def load_by_init(path):
    XFormer('xxsmall', init_cfg=dict(type='Pretrained', checkpoint=path)).init_weights()


@pytest.mark.parametrize('load',
                         [load_checkpoint_safely, CheckpointLoader.load_checkpoint, load_by_init])
@pytest.mark.parametrize('kind', list(NOT_CHECKPOINTS))
def test_a_file_that_is_not_a_checkpoint_is_named(tmp_path, kind, load):
    write, what = NOT_CHECKPOINTS[kind]
    path = tmp_path / f'{kind}.pth'
    write(path)
    with pytest.raises(NotACheckpointError) as info:
        load(str(path))
    message = str(info.value)
    assert message.startswith(str(path)) and 'checkpoint' in message and what in message
    assert 'weights_only' not in message


@pytest.mark.parametrize('legacy', [False, True])
def test_checkpoints_of_both_formats_load(tmp_path, legacy):
    path = tmp_path / 'good.pth'
    torch.save(
        dict(state_dict=dict(w=torch.arange(2.))), path, _use_new_zipfile_serialization=not legacy)
    assert load_checkpoint_safely(str(path))['state_dict']['w'].tolist() == [0., 1.]
    with open(path, 'rb') as f:  # a file object: read from where it stands, as torch.load does
        buffer = io.BytesIO(f.read())
    assert load_checkpoint_safely(buffer, source='s3://x')['state_dict']['w'].tolist() == [0., 1.]
    with pytest.raises(NotACheckpointError, match=r'^s3://x is not a PyTorch checkpoint'):
        load_checkpoint_safely(io.BytesIO(b'<html>'), source='s3://x')
