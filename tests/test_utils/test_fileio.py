import os
import signal
import socket
import subprocess
import sys
import threading

import pytest

from mmxformer.utils.fileio import LockedError, exclusive_lock, write_text_atomically


def test_text_is_written_whole_and_nothing_else_is_left(tmp_path):
    path = tmp_path / 'sub' / 'results.json'
    write_text_atomically(str(path), 'first\n')
    write_text_atomically(str(path), 'second\n')
    assert path.read_text() == 'second\n'
    assert os.listdir(path.parent) == ['results.json']


def test_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / 'results.json'
    path.write_text('old\n')

    def fail(src, dst):
        raise OSError('disk full')

    monkeypatch.setattr(os, 'replace', fail)
    with pytest.raises(OSError, match='disk full'):
        write_text_atomically(str(path), 'new\n')
    assert path.read_text() == 'old\n' and os.listdir(tmp_path) == ['results.json']


def test_a_lock_is_held_by_one_holder_at_a_time(tmp_path):
    lock = str(tmp_path / 'run.lock')
    with exclusive_lock(lock):
        assert open(lock).read() == f'pid {os.getpid()} on {socket.gethostname()}\n'
        with pytest.raises(LockedError, match=f'held by pid {os.getpid()} on') as error:
            with exclusive_lock(lock):
                pass
        assert error.value.holder.startswith(f'pid {os.getpid()}')
    assert os.listdir(tmp_path) == []  # released and removed
    with exclusive_lock(lock):
        pass


def test_the_lock_of_a_killed_holder_is_released(tmp_path):
    lock = tmp_path / 'run.lock'
    # a holder as exclusive_lock leaves it when killed: its file, its flock (without importing
    # mmxformer, which takes seconds)
    holder = subprocess.Popen([
        sys.executable, '-c', 'import fcntl, os, time\n'
        f'fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)\n'
        'fcntl.flock(fd, fcntl.LOCK_EX)\n'
        'os.write(fd, f"pid {os.getpid()} on host\\n".encode())\n'
        'print(flush=True)\n'
        'time.sleep(600)'
    ],
                              stdout=subprocess.PIPE)
    try:
        holder.stdout.readline()
        with pytest.raises(LockedError, match=f'held by pid {holder.pid} on host'):
            with exclusive_lock(str(lock)):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert lock.exists()  # left by the killed holder, and taken over
    with exclusive_lock(str(lock)):
        assert lock.read_text().startswith(f'pid {os.getpid()} ')


def test_a_waiting_holder_gets_the_lock_when_it_is_released(tmp_path):
    lock = str(tmp_path / 'run.lock')
    order, waited = [], []

    def second():
        with exclusive_lock(lock, wait=True, on_wait=waited.append):
            order.append('second')

    with exclusive_lock(lock):
        thread = threading.Thread(target=second)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive() and waited == [f'pid {os.getpid()} on {socket.gethostname()}']
        order.append('first')
    thread.join(10)
    assert order == ['first', 'second'] and os.listdir(tmp_path) == []
