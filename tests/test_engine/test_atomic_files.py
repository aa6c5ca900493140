"""Checkpoints and dumped predictions are never half-written: on a full disk the earlier file
stays whole under its name, and no temporary file is left."""
import errno
import os
import subprocess
from contextlib import contextmanager

import pytest
import torch
from mmengine.evaluator import DumpResults
from mmengine.fileio import get_file_backend, load
from mmengine.runner.checkpoint import save_checkpoint

from mmxformer.engine import AtomicDump, register_atomic_local_backend

ATOMIC = dict(backend=register_atomic_local_backend())


@contextmanager
def mounted_tmpfs(point, *options):
    """A tmpfs mounted at ``point`` (made) with ``options`` (``size=64k``, ``ro``) for the
    block; skips the test where mounting is not permitted (not root, a container without
    CAP_SYS_ADMIN)."""
    point.mkdir()
    result = subprocess.run(['mount', '-t', 'tmpfs', '-o', ','.join(options), 'tmpfs',
                             str(point)],
                            capture_output=True,
                            text=True)
    if result.returncode:
        pytest.skip(f'needs to mount a tmpfs (root): {result.stderr.strip()}')
    try:
        yield point
    finally:
        subprocess.run(['umount', '-l', str(point)], check=True)


def fill(disk, leave):
    """Fill the mounted ``disk`` up to ``leave`` bytes."""
    stat = os.statvfs(disk)
    with open(disk / 'filler', 'wb') as f:
        f.write(b'\0' * (stat.f_bavail * stat.f_frsize - leave))


@pytest.fixture
def full_disk(tmp_path):
    """A 256 KiB tmpfs holding ``earlier.pkl`` (1 KiB of earlier results), with 16 KiB left."""
    with mounted_tmpfs(tmp_path / 'disk', 'size=256k') as disk:
        (disk / 'earlier.pkl').write_bytes(b'e' * 1024)
        fill(disk, 16 << 10)
        yield disk


def test_the_backend_keeps_the_earlier_file_on_a_full_disk(full_disk):
    target = full_disk / 'earlier.pkl'
    backend = get_file_backend(str(target), backend_args=ATOMIC)
    with pytest.raises(OSError) as error:
        backend.put(b'n' * (64 << 10), str(target))
    assert (error.value.errno, error.value.filename) == (errno.ENOSPC, str(target))
    assert target.read_bytes() == b'e' * 1024
    assert sorted(os.listdir(full_disk)) == ['earlier.pkl', 'filler']
    with pytest.raises(OSError):
        backend.put_text('n' * (64 << 10), str(full_disk / 'new.txt'))
    assert sorted(os.listdir(full_disk)) == ['earlier.pkl', 'filler']


def test_mmengine_saves_checkpoints_through_the_backend(tmp_path, monkeypatch):
    path = str(tmp_path / 'epoch_1.pth')
    written = []
    real_replace = os.replace
    monkeypatch.setattr(os, 'replace',
                        lambda src, dst: written.append(dst) or real_replace(src, dst))
    save_checkpoint(dict(state_dict=dict(w=torch.ones(3))), path, backend_args=ATOMIC)
    assert written == [path] and os.listdir(tmp_path) == ['epoch_1.pth']
    assert torch.load(path, weights_only=True)['state_dict']['w'].tolist() == [1., 1., 1.]


def dump_of(out):
    metric = AtomicDump(dict(type='DumpResults', out_file_path=str(out)))
    metric.dataset_meta = dict(classes=('a', ))
    metric.process({}, [dict(pred=torch.arange(4.))])
    return metric


def test_the_dump_metric_writes_what_dump_results_writes(tmp_path):
    out = tmp_path / 'new' / 'results.pkl'  # its directory made, as DumpResults does
    metric = dump_of(out)
    assert isinstance(metric.dump,
                      DumpResults) and metric.dump.dataset_meta == dict(classes=('a', ))
    assert metric.evaluate(1) == {}
    assert load(str(out))[0]['pred'].tolist() == [0., 1., 2., 3.]
    assert os.listdir(out.parent) == ['results.pkl']


def test_the_dump_metric_keeps_the_earlier_results_on_a_full_disk(full_disk):
    out = full_disk / 'earlier.pkl'
    metric = dump_of(out)
    metric.results[0]['pred'] = torch.zeros(64 << 10, dtype=torch.uint8)  # more than is left
    with pytest.raises(OSError) as error:
        metric.evaluate(1)
    assert (error.value.errno, error.value.filename) == (errno.ENOSPC, str(out))
    assert out.read_bytes() == b'e' * 1024
    assert sorted(os.listdir(full_disk)) == ['earlier.pkl', 'filler']


def test_the_dump_metric_leaves_no_file_on_a_full_disk(full_disk):
    out = full_disk / 'new.pkl'  # no earlier results: no empty file under the name either
    metric = dump_of(out)
    metric.results[0]['pred'] = torch.zeros(64 << 10, dtype=torch.uint8)
    with pytest.raises(OSError, match='No space left on device'):
        metric.evaluate(1)
    assert sorted(os.listdir(full_disk)) == ['earlier.pkl', 'filler']
