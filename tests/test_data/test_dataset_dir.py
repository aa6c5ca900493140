import json
import threading
import time

import pytest

from mmxformer.data.digits.dataset_dir import MANIFEST, build_once, read_manifest


def writer(calls, content='a'):

    def write(root):
        calls.append(root)
        (root / 'data.txt').write_text(content)
        return dict(files=1)

    return write


def test_writes_once_then_does_nothing(tmp_path):
    calls = []
    out = build_once(tmp_path / 'set', 'toy', dict(size=(1, 2)), writer(calls))
    assert (out / 'data.txt').read_text() == 'a'
    manifest = read_manifest(out)
    assert manifest['complete'] and manifest['args'] == dict(size=[1, 2])
    assert manifest['counts'] == dict(files=1)
    assert calls[0] != out and calls[0].parent == tmp_path  # built next to it, then renamed
    build_once(tmp_path / 'set', 'toy', dict(size=(1, 2)), writer(calls, 'b'))
    assert len(calls) == 1 and (out / 'data.txt').read_text() == 'a'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['set']


def test_other_arguments_need_force(tmp_path):
    build_once(tmp_path / 'set', 'toy', dict(size=1), writer([]))
    with pytest.raises(FileExistsError, match='force'):
        build_once(tmp_path / 'set', 'toy', dict(size=2), writer([], 'b'))
    out = build_once(tmp_path / 'set', 'toy', dict(size=2), writer([], 'b'), force=True)
    assert (out / 'data.txt').read_text() == 'b' and read_manifest(out)['args'] == dict(size=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['set']


def test_existing_directory_without_manifest_is_kept(tmp_path):
    (tmp_path / 'set').mkdir()
    (tmp_path / 'set' / 'mine.txt').write_text('keep')
    with pytest.raises(FileExistsError, match=MANIFEST):
        build_once(tmp_path / 'set', 'toy', {}, writer([]))
    assert (tmp_path / 'set' / 'mine.txt').read_text() == 'keep'


def test_incomplete_manifest_is_not_a_set(tmp_path):
    (tmp_path / 'set').mkdir()
    (tmp_path / 'set' / MANIFEST).write_text(json.dumps(dict(kind='toy', args={})))
    assert read_manifest(tmp_path / 'set') is None


def test_failed_write_leaves_nothing(tmp_path):

    def write(root):
        (root / 'half.txt').write_text('half')
        raise RuntimeError('disk full')

    with pytest.raises(RuntimeError, match='disk full'):
        build_once(tmp_path / 'set', 'toy', {}, write)
    assert list(tmp_path.iterdir()) == []


def test_force_keeps_a_set_that_holds_files_a_user_added(tmp_path):
    out = build_once(tmp_path / 'set', 'toy', dict(size=1), writer([]))
    (out / 'notes').mkdir()
    (out / 'notes' / 'mine.txt').write_text('keep')
    with pytest.raises(
            FileExistsError,
            match=r'holds 1 files that this tool did not write '
            r'\(notes/mine.txt\), so even force=True \(--force\) does not replace it'):
        build_once(out, 'toy', dict(size=2), writer([], 'b'), force=True)
    assert (out / 'notes' / 'mine.txt').read_text() == 'keep'
    assert (out / 'data.txt').read_text() == 'a' and read_manifest(out)['args'] == dict(size=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['set']


def test_force_keeps_a_set_whose_manifest_lists_no_files(tmp_path):
    out = build_once(tmp_path / 'set', 'toy', dict(size=1), writer([]))
    manifest = read_manifest(out)
    assert manifest['files'] == ['data.txt']
    del manifest['files']  # as sets made before manifests listed their files
    (out / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(FileExistsError, match='made by an earlier version of this tool'):
        build_once(out, 'toy', dict(size=2), writer([], 'b'), force=True)
    assert (out / 'data.txt').read_text() == 'a'


def slow_writer(name, written, started):

    def write(root):
        written.append(name)
        started.set()
        time.sleep(0.5)  # long enough for the other run to be writing too, without the lock
        (root / 'data.txt').write_text(name)
        return dict(files=1)

    return write


@pytest.mark.parametrize('same', [True, False])
def test_a_second_run_into_the_same_set_waits_for_the_first(tmp_path, same):
    out, written, outcomes, started = tmp_path / 'set', [], {}, threading.Event()

    def run(name, size):
        try:
            build_once(out, 'toy', dict(size=size), slow_writer(name, written, started))
            outcomes[name] = 'made'
        except FileExistsError as error:
            outcomes[name] = str(error)

    first = threading.Thread(target=run, args=('first', 1))
    first.start()
    started.wait(10)
    second = threading.Thread(target=run, args=('second', 1 if same else 2))
    second.start()
    for thread in (first, second):
        thread.join(30)
    # the second one waited, then found the first one's set: the same, or another one that it
    # may not replace (without the lock, it replaced it: both ended well, one set was gone)
    assert written == ['first'] and outcomes['first'] == 'made'
    assert (out / 'data.txt').read_text() == 'first'
    if same:
        assert outcomes['second'] == 'made'
    else:
        assert 'holds a toy set made with other arguments' in outcomes['second']
    assert sorted(p.name for p in tmp_path.iterdir()) == ['set']
