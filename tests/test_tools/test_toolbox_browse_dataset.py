"""The toolboxes' own browse_dataset.py tools (shipped in each package's .mim folder) draw the
training sets of the digits configs, one picture an image, and end."""
import glob
import os.path as osp
import subprocess
import sys

import mmcv
import pytest
from conftest import ROOT, digits_options
from mmengine.utils import get_installed_path

DIGITS_CONFIGS = dict(
    det='configs/xformer_yolov3_digits.py',
    seg='configs/xformer_mlp-decoder_digits.py',
    cls='configs/xformer-xxs_digits.py')
TOOLS = [
    # package, tool, task, where it writes its pictures under --output-dir
    ('mmdet', 'analysis_tools/browse_dataset.py', 'det', '*.jpg'),
    ('mmseg', 'analysis_tools/browse_dataset.py', 'seg', '*.png'),
    ('mmseg', 'misc/browse_dataset.py', 'seg', 'vis_data/vis_image/*.png'),
    ('mmpretrain', 'visualization/browse_dataset.py', 'cls', '*.png'),
]
TRAIN_IMAGES = dict(det='train2017/*.jpg', seg='leftImg8bit/train/*/*.png', cls='train/*/*.png')


@pytest.mark.parametrize('package, tool, task, pictures', TOOLS, ids=lambda x: str(x))
def test_browse_dataset_draws_every_training_image_and_ends(package, tool, task, pictures,
                                                            tiny_sets, tmp_path):
    pytest.importorskip(package)
    path = osp.join(get_installed_path(package), '.mim', 'tools', tool)
    options = [f'{key}={value}' for key, value in digits_options(task, tiny_sets[task]).items()]
    result = subprocess.run([
        sys.executable, path,
        osp.join(ROOT, DIGITS_CONFIGS[task]), '--not-show', '--output-dir',
        str(tmp_path), '--cfg-options', *options
    ],
                            cwd=ROOT,
                            capture_output=True,
                            text=True,
                            timeout=300)  # mmdet's tool iterated a RepeatDataset without end
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    drawn = sorted(glob.glob(str(tmp_path / pictures)))
    images = glob.glob(osp.join(tiny_sets[task], TRAIN_IMAGES[task]))
    assert len(drawn) == len(images) > 0
    assert all(mmcv.imread(picture).size for picture in drawn)
