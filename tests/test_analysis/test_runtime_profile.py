import json

import pytest
import torch

pytest.importorskip(
    'executorch.devtools',
    reason='ExecuTorch is not installed (pip install -e '
    "'.[deploy]', requirements/deploy.txt)")

pytest.importorskip('onnxruntime', reason='onnxruntime is not installed (requirements/deploy.txt)')

from mmxformer.analysis.executorch_profile import operator_kind, profile_program  # noqa: E402
from mmxformer.analysis.onnxruntime_profile import profile_session_runs  # noqa: E402
from mmxformer.deployment.export import executorch as ee  # noqa: E402
from mmxformer.deployment.export.onnx import trace_to_onnx  # noqa: E402


class ConvSiLUNorm(torch.nn.Module):
    """XNNPACK runs the conv and the SiLU; the LayerNorm is left to the portable kernels."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.norm = torch.nn.LayerNorm(32)

    def forward(self, x):
        return (self.norm(torch.nn.functional.silu(self.conv(x))), )


@pytest.fixture(scope='module')
def program():
    x = torch.rand(1, 3, 32, 32)
    return ee.lower_to_xnnpack(torch.export.export(ConvSiLUNorm().eval(), (x, )))[0], x


@pytest.fixture(scope='module')
def onnx_model(tmp_path_factory):
    x = torch.rand(1, 3, 32, 32)
    path = tmp_path_factory.mktemp('onnx') / 'model.onnx'
    trace_to_onnx(ConvSiLUNorm().eval(), x, str(path))
    return path.read_bytes(), x


def test_operator_kinds():
    assert operator_kind('Convolution (NHWC, QS8) IGEMM #12') == 'Convolution (NHWC, QS8) IGEMM'
    assert operator_kind('native_call_native_layer_norm.out') == 'portable: native_layer_norm'


def test_profile_names_the_operators_and_their_time(program):
    profile = profile_program(*program, runs=3)
    kinds = profile['kinds']
    assert any(kind.startswith('Convolution (NHWC, F32)') for kind in kinds), kinds
    assert 'portable: native_layer_norm' in kinds
    assert all(ms >= 0 for ms in kinds.values())
    assert list(kinds.values()) == sorted(kinds.values(), reverse=True)
    # the operators run within the method
    assert 0 < sum(kinds.values()) <= profile['total_ms']
    with pytest.raises(ValueError, match='at least one run'):
        profile_program(*program, runs=0)


def test_onnxruntime_profile_names_the_operator_types_and_their_time(onnx_model):
    profile = profile_session_runs(*onnx_model, runs=3, threads=1)
    kinds = profile['kinds']
    # onnxruntime fuses the SiLU's Sigmoid and Mul into its QuickGelu kernel
    assert {'Conv', 'QuickGelu', 'LayerNormalization'} <= set(kinds), kinds
    assert all(ms >= 0 for ms in kinds.values())
    assert list(kinds.values()) == sorted(kinds.values(), reverse=True)
    # the kernels run within the run
    assert 0 < sum(kinds.values()) <= profile['total_ms']
    with pytest.raises(ValueError, match='at least one run'):
        profile_session_runs(*onnx_model, runs=0)


@pytest.mark.parametrize('runtime, builder, title, operator, total', [
    ('executorch', 'executorch_program', 'ExecuTorch (XNNPACK)',
     'operator (XNNPACK, or portable kernel)', 'Method::execute'),
    ('onnxruntime', 'onnx_model', 'onnxruntime (CPU)', 'operator type (onnxruntime)', 'model_run'),
])
def test_tool_prints_fp32_beside_int8(request, load_tool, monkeypatch, tmp_path, capsys, runtime,
                                      builder, title, operator, total):
    tool = load_tool('analysis_tools/profile_runtime.py')
    exported = request.getfixturevalue('program' if runtime == 'executorch' else 'onnx_model')
    built = []

    def fake_builder(name, precision, x):  # the export of the models takes minutes
        built.append((name, precision, tuple(x.shape)))
        return exported[0]

    monkeypatch.setattr(tool.bm, builder, fake_builder)
    tool.main([
        '--runtime', runtime, '--sizes', '32', '--runs', '2', '--top', '1', '--threads', '1',
        '--out',
        str(tmp_path / 'p.json')
    ])
    assert built == [('xformer-s', 'fp32', (1, 3, 32, 32)), ('xformer-s', 'int8', (1, 3, 32, 32))]
    lines = capsys.readouterr().out.splitlines()
    assert f'xformer-s at 32x32, {title}, 2 runs, medians' in lines
    table = [line for line in lines if line.startswith('| ')]
    assert table[0] == f'| {operator} | fp32 ms | int8 ms |'
    assert len(table) == 1 + 1 + 2 and table[2].startswith('| the other ')
    assert table[3].startswith(f'| **{total}** |')
    record, = json.loads((tmp_path / 'p.json').read_text())
    assert record['runtime'] == runtime and record['model'] == 'xformer-s'
    assert set(record) >= {'fp32', 'int8'}
