import importlib.util
import os.path as osp

import pytest

from mmxformer.digits.dataset_dir import read_manifest

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
    make_digits.main(['seg', '--out', str(tmp_path / 'seg'), '--num-train', '1', '--num-val', '1',
                      '--image-size', '64', '96', '--digit-size', '16', '32', '--num-digits',
                      '2', '3'])
    args = read_manifest(tmp_path / 'seg')['args']
    assert (args['image_size'], args['digit_size'], args['num_digits']) == ([64, 96], [16, 32],
                                                                             [2, 3])
    make_digits.main(['cls', '--out', str(tmp_path / 'cls'), '--num-train', '1', '--num-val', '2',
                      '--image-size', '48', '--digit-size', '20', '40'])
    args = read_manifest(tmp_path / 'cls')['args']
    assert args['image_size'] == [48, 48] and args['num_test'] == 2


def test_defaults_go_to_the_repository_data_dir(make_digits):
    assert make_digits.DATA_DIR == osp.join(ROOT, 'data')


@pytest.mark.parametrize('argv', [['cls', '--num-digits', '1', '2'],
                                  ['det', '--image-size', '1', '2', '3'], ['seg2']])
def test_bad_command_lines(make_digits, argv):
    with pytest.raises(SystemExit):
        make_digits.parse_args(argv)
