import os
import os.path as osp
import subprocess
import sys
import time

import pytest

from mmxformer.cli import UsageError
from mmxformer.data.digits.dataset_dir import read_manifest
from mmxformer.utils.fileio import exclusive_lock

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.fixture(scope='module')
def make_digits(load_tool):
    return load_tool('misc/make_digits.py')


def test_all_writes_three_sets_then_nothing(make_digits, tmp_path):
    argv = ['all', '--out', str(tmp_path), '--num-train', '2', '--num-val', '1', '--seed', '3']
    make_digits.main(argv)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['digits_cls', 'digits_det', 'digits_seg']
    det = read_manifest(tmp_path / 'digits_det')
    assert det['args']['seed'] == 3 and det['counts']['val']['images'] == 1
    assert read_manifest(tmp_path / 'digits_cls')['counts'] == dict(train=2, test=1)
    stamp = (tmp_path / 'digits_seg' / 'digits_manifest.json').stat().st_mtime_ns
    make_digits.main(argv)
    assert (tmp_path / 'digits_seg' / 'digits_manifest.json').stat().st_mtime_ns == stamp


def test_sizes_reach_the_maker(make_digits, tmp_path):
    make_digits.main([
        'seg', '--out',
        str(tmp_path / 'seg'), '--num-train', '1', '--num-val', '1', '--image-size', '64', '96',
        '--digit-size', '16', '32', '--num-digits', '2', '3'
    ])
    args = read_manifest(tmp_path / 'seg')['args']
    assert (args['image_size'], args['digit_size'], args['num_digits']) == ([64, 96], [16,
                                                                                       32], [2, 3])
    make_digits.main([
        'cls', '--out',
        str(tmp_path / 'cls'), '--num-train', '1', '--num-val', '2', '--image-size', '48',
        '--digit-size', '20', '40'
    ])
    args = read_manifest(tmp_path / 'cls')['args']
    assert args['image_size'] == [48, 48] and args['num_test'] == 2


def test_defaults_go_to_the_repository_data_dir(make_digits):
    assert make_digits.DATA_DIR == osp.join(ROOT, 'data')


@pytest.mark.parametrize(
    'argv', [['cls', '--num-digits', '1', '2'], ['det', '--image-size', '1', '2', '3'], ['seg2']])
def test_bad_command_lines(make_digits, argv):
    with pytest.raises(SystemExit):
        make_digits.parse_args(argv)


def dead_pid():
    process = subprocess.Popen([sys.executable, '-c', 'pass'])
    process.wait()
    return process.pid


TINY = ['--num-train', '2', '--num-val', '1']


def test_force_never_replaces_a_directory_the_tool_did_not_make(make_digits, tmp_path):
    out = tmp_path / 'mine'
    out.mkdir()
    (out / 'thesis.tex').write_text('keep')
    with pytest.raises(FileExistsError, match='holds no set made by this tool') as error:
        make_digits.main(['det', '--out', str(out), '--force', *TINY])
    assert '--force' not in str(error.value) and 'force=True' not in str(error.value)
    assert [p.name for p in out.iterdir()] == ['thesis.tex']


def test_force_replaces_a_set_the_tool_made(make_digits, tmp_path):
    out = tmp_path / 'set'
    make_digits.main(['cls', '--out', str(out), *TINY])
    with pytest.raises(FileExistsError, match='other arguments.*--force'):
        make_digits.main(['cls', '--out', str(out), *TINY, '--seed', '1'])
    make_digits.main(['cls', '--out', str(out), *TINY, '--seed', '1', '--force'])
    assert read_manifest(out)['args']['seed'] == 1
    assert [p.name for p in tmp_path.iterdir()] == ['set']


def test_what_killed_runs_left_is_cleaned_up(make_digits, tmp_path):
    import os
    import shutil
    out = tmp_path / 'digits_cls'
    make_digits.main(['cls', '--out', str(out), *TINY])
    dead = dead_pid()
    tmp = tmp_path / f'.digits_cls.tmp-{dead}-0123abcd'
    tmp.mkdir()
    (tmp / 'half.png').write_bytes(b'')
    shutil.copytree(out, tmp_path / f'.digits_cls.old-{dead}')  # the set it was replacing
    running = tmp_path / f'.digits_cls.tmp-{os.getpid()}-89abcdef'  # a run still going
    other = tmp_path / f'.digits_det.tmp-{dead}-0123abcd'  # another set's
    for path in (running, other):
        path.mkdir()
    make_digits.main(['cls', '--out', str(out), *TINY])
    assert sorted(p.name
                  for p in tmp_path.iterdir()) == sorted([running.name, other.name, 'digits_cls'])


def test_set_a_killed_run_had_moved_aside_is_put_back(make_digits, tmp_path):
    out = tmp_path / 'digits_cls'
    make_digits.main(['cls', '--out', str(out), *TINY])
    stamp = (out / 'digits_manifest.json').stat().st_mtime_ns
    out.rename(tmp_path / f'.digits_cls.old-{dead_pid()}')  # killed between its two renames
    make_digits.main(['cls', '--out', str(out), *TINY])
    assert [p.name for p in tmp_path.iterdir()] == ['digits_cls']
    assert (out / 'digits_manifest.json').stat().st_mtime_ns == stamp  # put back, not rewritten


def test_force_never_deletes_files_a_user_added(make_digits, tmp_path):
    out = tmp_path / 'digits_cls'
    make_digits.main(['cls', '--out', str(out), *TINY])
    (out / 'train' / 'labels_i_fixed.txt').write_text('mine')
    with pytest.raises(
            FileExistsError,
            match=r'holds 1 files that this tool did not write '
            r'\(train/labels_i_fixed.txt\)'):
        make_digits.main(['cls', '--out', str(out), *TINY, '--seed', '1', '--force'])
    assert (out / 'train' / 'labels_i_fixed.txt').read_text() == 'mine'
    assert read_manifest(out)['args']['seed'] == 0


@pytest.mark.slow
def test_a_second_run_into_the_same_set_waits(tmp_path):
    out, log = tmp_path / 'digits_cls', tmp_path / 'log'
    with exclusive_lock(str(tmp_path / '.digits_cls.lock')), open(log, 'w') as f:
        run = subprocess.Popen(
            [sys.executable, f'{ROOT}/tools/misc/make_digits.py', 'cls', '--out',
             str(out), *TINY],
            stdout=f,
            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while 'waiting for' not in log.read_text():
            assert run.poll() is None, f'it did not wait: {log.read_text()}'
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert f'{out}: waiting for pid {os.getpid()} on ' in log.read_text()
        assert not out.exists()
    assert run.wait(120) == 0, log.read_text()
    assert read_manifest(out)['counts'] == dict(train=2, test=1)


@pytest.fixture(scope='module')
def mounted_tmpfs():
    from conftest import load_module
    return load_module(osp.join(ROOT, 'tests/test_engine/test_atomic_files.py')).mounted_tmpfs


def test_a_disk_that_cannot_take_the_set_is_one_line(make_digits, mounted_tmpfs, tmp_path):
    with mounted_tmpfs(tmp_path / 'ro', 'ro', 'size=64k') as disk:
        with pytest.raises(
                UsageError,
                match=rf'--out {disk}/set: no file can be created in {disk} '
                r'\(Read-only file system\)'):
            make_digits.main(['cls', '--out', str(disk / 'set'), *TINY])
    with mounted_tmpfs(tmp_path / 'full', 'size=16k') as disk:
        with pytest.raises(
                UsageError, match=rf'--out {disk}/set: not written \(.*\); nothing of '
                'it is left'):
            make_digits.main(['cls', '--out', str(disk / 'set'), '--num-train', '200'])
        assert os.listdir(disk) == []


def test_arguments_the_maker_refuses_are_one_line(make_digits, tmp_path):
    with pytest.raises(UsageError, match='^num_train must be an int of at least 1, not -3$'):
        make_digits.main(['cls', '--out', str(tmp_path / 'set'), '--num-train', '-3'])
    assert os.listdir(tmp_path) == []


def test_a_set_on_a_read_only_disk_is_found(make_digits, mounted_tmpfs, tmp_path, capsys):
    with mounted_tmpfs(tmp_path / 'disk', 'size=1m') as disk:
        make_digits.main(['cls', '--out', str(disk / 'set'), *TINY])
        subprocess.run(['mount', '-o', 'remount,ro', str(disk)], check=True)
        make_digits.main(['cls', '--out', str(disk / 'set'), *TINY])  # nothing to write
        assert f'digits_cls: {disk}/set' in capsys.readouterr().out
