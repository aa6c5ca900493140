"""tools/analysis_tools/get_flops.py: the input shape is checked as the exporter checks it."""
import os.path as osp
import re

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DETECTOR = osp.join(ROOT, 'configs/xformer_yolov3_digits.py')
CLASSIFIER = osp.join(ROOT, 'configs/xformer-xxs_digits.py')
MISSING = osp.join(ROOT, 'configs/missing.py')


@pytest.fixture(scope='module')
def get_flops(load_tool):
    return load_tool('analysis_tools/get_flops.py').main


@pytest.mark.parametrize('config, shape, message', [
    (DETECTOR, ['100', '100'], 'padded to multiples of 32'),
    (DETECTOR, ['-32'], 'two positive integers'),
    (CLASSIFIER, ['0', '32'], 'two positive integers'),
])
def test_shape_the_model_cannot_take_is_refused(get_flops, config, shape, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        get_flops([config, '--shape', *shape])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_shape_the_model_takes_is_counted(get_flops, capsys):
    get_flops([CLASSIFIER, '--shape', '40', '56'])  # a classifier does not pad
    assert 'Input shape: 40x56 (HxW)' in capsys.readouterr().out


TOO_LARGE = (r'error: an input of \(1, 3, 100000, 100000\) needs at least [\d.]+ GiB for the '
             r'tensors of one forward pass of the model, and this machine has [\d.]+ GiB free: '
             'use a smaller input shape')


@pytest.mark.parametrize(
    'config, shape, message',
    [
        (CLASSIFIER, ['100000', '100000'], TOO_LARGE),
        (CLASSIFIER, ['100000'], TOO_LARGE),  # one number: a square
        (MISSING, ['32'], 'error: Config file .*missing.py does not exist'),
    ])
def test_what_cannot_be_counted_is_one_line(get_flops, config, shape, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        get_flops([config, '--shape', *shape])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.search(message, err), err
