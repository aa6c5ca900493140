"""The unpickler that loads checkpoints on torch < 2.4 (``torch.load``'s ``pickle_module``),
run here on raw pickles: what it rebuilds, and what it refuses before anything changes."""
import io
import pickle

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.optim.scheduler.param_scheduler import OneCycleParamScheduler

from mmxformer.checkpoint import weights_only


def unpickle(data: bytes):
    return weights_only.load(io.BytesIO(data), encoding='utf-8')


def test_protocol_2_containers_bytes_and_numpy_load():
    """torch.save writes protocol 2: bytes as _codecs.encode, sets as builtins.set, Python 2
    module names; numpy arrays and scalars as a message hub holds them."""
    value = dict(
        raw=b'\x00\xffabc',
        labels={1, 2},
        array=np.arange(4, dtype=np.float64),
        scalar=np.float32(0.5),
        dtype=torch.bfloat16,
        nested=[(1, 'a'), None, 2.5])
    loaded = unpickle(pickle.dumps(value, protocol=2))
    assert loaded['raw'] == value['raw'] and loaded['labels'] == {1, 2}
    assert loaded['array'].tolist() == [0., 1., 2., 3.] and loaded['scalar'] == np.float32(0.5)
    assert loaded['dtype'] is torch.bfloat16 and loaded['nested'] == value['nested']


def test_a_history_buffer_is_rebuilt():
    history = HistoryBuffer()
    history.update(3.0)
    loaded = unpickle(pickle.dumps(history, protocol=2))
    assert isinstance(loaded, HistoryBuffer) and loaded.current() == 3.0


@pytest.mark.parametrize('data, reason', [
    (pickle.dumps(print, protocol=2), r'GLOBAL builtins\.print was not an allowed global'),
    (b'\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x09\x00\x00\x00hex_codec\x86R.',
     r"_codecs\.encode\(str, 'hex_codec'\) is refused"),
])
def test_globals_outside_the_list_are_refused(data, reason):
    with pytest.raises(pickle.UnpicklingError, match=reason):
        unpickle(data)


def test_build_on_an_allowed_class_itself_is_refused():
    """BUILD with a (None, slots) state sets attributes: on the class OneCycleParamScheduler
    it would replace its method ``step`` for the whole process, as Python's unpickler does."""
    step = OneCycleParamScheduler.step  # inherited, not in the class's own __dict__
    assert 'step' not in vars(OneCycleParamScheduler)
    data = (b'\x80\x02cmmengine.optim.scheduler.param_scheduler\nOneCycleParamScheduler\n'
            b'N}X\x04\x00\x00\x00stepK\x01s\x86b.')
    with pytest.raises(
            pickle.UnpicklingError,
            match=r'Can only build instances of allowed '
            r'classes, but got builtins\.type'):
        unpickle(data)
    assert OneCycleParamScheduler.step is step
    try:  # the same bytes through Python's unpickler change the class: the check matters
        assert pickle.loads(data) is OneCycleParamScheduler and OneCycleParamScheduler.step == 1
    finally:
        del OneCycleParamScheduler.step
