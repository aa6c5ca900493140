import json

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
