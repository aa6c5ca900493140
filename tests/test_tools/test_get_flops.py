"""tools/analysis_tools/get_flops.py: the input shape is checked as the exporter checks it."""
import os.path as osp

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DETECTOR = osp.join(ROOT, 'configs/xformer_yolov3_digits.py')
CLASSIFIER = osp.join(ROOT, 'configs/xformer-xxs_digits.py')


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
