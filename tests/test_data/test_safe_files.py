import collections
import io
import pickle
import re

import mmengine
import numpy as np
import pytest

from mmxformer.data.safe_files import UnsafeDataFileError, check_data_file, load_pickle_safely

PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)


class CreatesFile:
    """Unpickled, creates the file ``path``: the payload of a code-running pickle."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, 'w')


def annotations():
    """What annotation pickles hold: containers, scalars, bytes and numpy arrays and scalars."""
    return dict(
        metainfo=dict(classes=('a', 'b'), palette=[[0, 0, 0], [255, 0, 0]]),
        data_list=[
            dict(
                img_path='a/0.png',
                gt_label=np.int64(1),
                boxes=np.arange(8, dtype=np.float32).reshape(2, 4),
                records=np.zeros(2, dtype=[('x', 'i4'), ('name', 'U3')]),
                objects=np.array([1, 'x', None], dtype=object),
                flag=np.bool_(True),
                tags={'t'},
                frozen=frozenset([1]),
                ordered=collections.OrderedDict(k=1.5),
                raw=b'\x00\xff',
                buffer=bytearray(b'b'),
                complex=1 + 2j)
        ])


@pytest.mark.parametrize('protocol', PROTOCOLS)
def test_annotation_pickles_of_every_protocol_are_read(protocol):
    data = load_pickle_safely(io.BytesIO(pickle.dumps(annotations(), protocol=protocol)), 'a')
    expected = annotations()
    assert data['metainfo'] == expected['metainfo']
    info, want = data['data_list'][0], expected['data_list'][0]
    for key, value in want.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(info[key], value)
            assert info[key].dtype == value.dtype
        else:
            assert info[key] == value and type(info[key]) is type(value)


@pytest.mark.parametrize('protocol', PROTOCOLS)
def test_a_code_running_pickle_is_refused_unrun(tmp_path, protocol):
    marker = tmp_path / 'payload-ran'
    data = pickle.dumps([np.zeros(2), CreatesFile(marker)], protocol=protocol)
    with pytest.raises(UnsafeDataFileError, match=r'^evil.pkl needs io.open to be unpickled'):
        load_pickle_safely(io.BytesIO(data), 'evil.pkl')
    assert not marker.exists()


def test_only_latin1_strings_are_encoded():
    # Protocol 2 pickles bytes as _codecs.encode(text, 'latin1'); another codec would import
    # a codec module of the pickle's choosing.
    data = pickle.dumps(b'xy', protocol=2).replace(b'latin1', b'rot_13')
    with pytest.raises(UnsafeDataFileError, match="_codecs.encode with the codec 'rot_13'"):
        load_pickle_safely(io.BytesIO(data), 'codec.pkl')


@pytest.mark.parametrize('content, reason', [
    (b'', 'EOFError: Ran out of input'),
    (pickle.dumps(list(range(100)), protocol=2)[:40], 'EOFError: Ran out of input'),
    (b'\x80\x02\xff', "UnpicklingError: invalid load key, '\\xff'"),
])
def test_a_damaged_pickle_is_named(tmp_path, content, reason):
    path = tmp_path / 'ann.pkl'
    path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(f'{path} is not a readable pickle ({reason}')):
        check_data_file(str(path))


def test_a_pickle_is_known_by_its_name_or_its_first_bytes(tmp_path):
    marker = tmp_path / 'payload-ran'
    for name in ('ann.pkl', 'ann.pickle', 'refs(unc).p', 'meta'):  # 'meta': by its bytes
        path = tmp_path / name
        path.write_bytes(pickle.dumps(CreatesFile(marker), protocol=2))
        with pytest.raises(UnsafeDataFileError, match=re.escape(f'{path} needs io.open')):
            check_data_file(str(path))
    assert not marker.exists()
    text = tmp_path / 'train.txt'
    text.write_text('cat/0.png 0\n')  # 'c' is pickle's GLOBAL: a text file is not unpickled
    check_data_file(str(text))


def test_yaml_is_read_with_the_safe_loader(tmp_path):
    marker = tmp_path / 'payload-ran'
    path = tmp_path / 'ann.yaml'
    path.write_text(f'metainfo: {{}}\ndata_list: !!python/object/apply:builtins.open '
                    f'["{marker}", "w"]\n')
    with pytest.raises(UnsafeDataFileError, match=f'{path}, line 2: a YAML tag that builds'):
        check_data_file(str(path))
    assert not marker.exists()
    mmengine.dump(dict(data_list=[dict(img_path='a.png', gt_label=1)]), tmp_path / 'plain.yml')
    check_data_file(str(tmp_path / 'plain.yml'))
    (tmp_path / 'broken.yml').write_text('a: [1, 2\n')
    with pytest.raises(ValueError, match='broken.yml is not valid YAML'):
        check_data_file(str(tmp_path / 'broken.yml'))


def test_npy_arrays_of_objects_are_unpickled_safely(tmp_path):
    marker = tmp_path / 'payload-ran'
    np.save(tmp_path / 'numbers.npy', np.eye(3))
    np.save(tmp_path / 'tree.npy', np.array([[1, 'a'], [2, None]], dtype=object))
    np.save(tmp_path / 'evil.npy', np.array([CreatesFile(marker)], dtype=object))
    check_data_file(str(tmp_path / 'numbers.npy'))
    check_data_file(str(tmp_path / 'tree.npy'))
    with pytest.raises(UnsafeDataFileError, match='evil.npy needs io.open'):
        check_data_file(str(tmp_path / 'evil.npy'))
    assert not marker.exists()
