"""tools/misc/gpu_end_to_end.sh, the end-to-end check of a machine with a CUDA GPU: where torch
sees none, it stops at its first step with one line, before it makes data or trains."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from conftest import ROOT


@pytest.mark.skipif(torch.cuda.is_available(), reason='this machine has a CUDA GPU')
def test_stops_with_one_line_without_a_gpu(tmp_path):
    result = subprocess.run(['bash', osp.join(ROOT, 'tools', 'misc', 'gpu_end_to_end.sh')],
                            env=dict(os.environ, PY=sys.executable, OUT=str(tmp_path / 'out')),
                            capture_output=True,
                            text=True,
                            timeout=300)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == 'gpu_end_to_end: torch sees no CUDA GPU'
    assert os.listdir(tmp_path / 'out') == ['gpu.txt']
