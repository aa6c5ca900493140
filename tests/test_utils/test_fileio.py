import os

import pytest

from mmxformer.utils.fileio import write_text_atomically


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
