import json
import os.path as osp

import onnx
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config

from mmxformer.checkpoint.state_dict import PretrainedKeysError
from mmxformer.deployment.export.network import ExportCheckError, build_network
from mmxformer.deployment.export.onnx import check_default_domain, export_onnx
from mmxformer.utils.config import load_config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# XXS models keep the exports fast; the necks and decoder follow the backbone's channels.
CLASSIFIER = ('configs/xformer-xxs_8xb128_in1k.py', {})
DETECTOR = ('configs/xformer_yolov3_digits.py', {
    'model.backbone.arch': 'xxsmall',
    'model.neck.in_channels': [80, 64, 48]
})
SEGMENTOR = ('configs/xformer_mlp-decoder_cityscapes.py', {
    'model.backbone.arch': 'xxsmall',
    'model.decode_head.in_channels': [24, 48, 64, 80]
})


def config(path, options):
    return load_config(osp.join(ROOT, path), options)


def dims(value_info):
    return [dim.dim_param or dim.dim_value for dim in value_info.type.tensor_type.shape.dim]


@pytest.mark.parametrize(
    'kind,outputs',
    [
        (CLASSIFIER, {
            'logits': ['batch', 1000]
        }),
        (DETECTOR, {
            f'pred_map_{level}': ['batch', 3 * (5 + 10)]
            for level in range(3)
        }),
        (SEGMENTOR, {
            'logits': ['batch', None, 'height', 'width']
        }),  # None: any name or size
    ])
def test_dynamic_export_matches_pytorch_at_two_sizes(kind, outputs, tmp_path):
    out = tmp_path / 'model.onnx'
    records = export_onnx(config(*kind), str(out), (64, 96), dynamic=True)
    assert [record['input_shape'] for record in records] == [(1, 3, 64, 96), (2, 3, 96, 160)]
    for record in records:
        assert set(record['max_abs_diff']) == set(outputs)

    graph = onnx.load(str(out))
    check_default_domain(graph)
    assert dims(graph.graph.input[0]) == ['batch', 3, 'height', 'width']
    assert [output.name for output in graph.graph.output] == list(outputs)
    for output in graph.graph.output:
        for got, expected in zip(dims(output), outputs[output.name]):
            assert got == expected or expected is None, (output.name, dims(output))
    metadata = {entry.key: entry.value for entry in graph.metadata_props}
    assert 'mean' in json.loads(metadata['preprocessing'])
    assert ('NMS are not included' in metadata['outputs']) == (kind is DETECTOR)


def test_static_export_from_the_command_line_with_a_checkpoint(load_tool, tmp_path, capsys):
    cfg = config(*CLASSIFIER)
    model = build_network(cfg).model
    with torch.no_grad():
        model.head.fc.bias.fill_(3.)  # weights that differ from the initialisation
    checkpoint = tmp_path / 'classifier.pth'
    torch.save(dict(state_dict=model.state_dict()), checkpoint)
    out = tmp_path / 'sub' / 'classifier.onnx'

    load_tool('deployment/export_onnx.py').main(
        [osp.join(ROOT, CLASSIFIER[0]),
         str(checkpoint), '--shape', '64', '64', '--out',
         str(out)])
    printed = capsys.readouterr().out
    assert 'input (1, 3, 64, 64): max abs diff logits' in printed
    assert f'Wrote {out}' in printed

    import onnxruntime as ort
    session = ort.InferenceSession(str(out), providers=['CPUExecutionProvider'])
    assert dims(onnx.load(str(out)).graph.input[0]) == [1, 3, 64, 64]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x, mode='tensor')
    assert expected.mean() > 2  # the loaded bias, not the initialised one
    torch.testing.assert_close(
        torch.from_numpy(session.run(None, {'input': x.numpy()})[0]), expected, atol=1e-4, rtol=0)


def test_checkpoint_of_another_model_is_refused(tmp_path):
    checkpoint = tmp_path / 'other.pth'
    torch.save(dict(state_dict={'backbone.stem.conv.weight': torch.zeros(1)}), checkpoint)
    with pytest.raises(PretrainedKeysError, match='does not fit ImageClassifier'):
        export_onnx(config(*CLASSIFIER), str(tmp_path / 'm.onnx'), (64, 64), str(checkpoint))


def test_detector_shape_must_be_padded_size(tmp_path):
    with pytest.raises(ValueError, match='multiples of 32'):
        export_onnx(config(*DETECTOR), str(tmp_path / 'm.onnx'), (64, 80))
    with pytest.raises(ValueError, match='multiples of 32'):
        export_onnx(
            config(*DETECTOR),
            str(tmp_path / 'm.onnx'), (64, 64),
            dynamic=True,
            second_shape=(100, 96))
    assert not list(tmp_path.iterdir())


class CopyIntoEmpty(nn.Module):
    """Writes a result into a view of ``torch.empty``, as an in-place fold might: eager PyTorch
    is right, but the TorchScript tracer does not record the copy, so the graph reads the empty
    buffer instead. With ``residual``, the output still depends on the input (only part of it is
    wrong); without, the graph does not read its input at all."""

    def __init__(self, residual):
        super().__init__()
        self.residual = residual
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        out = torch.empty_like(y)
        out.view(-1).copy_(y.reshape(-1).sigmoid())
        return (y + out if self.residual else out, )


@pytest.mark.parametrize('residual,message', [
    (True, r'max abs difference .* in logits > tolerance 0.0001'),
    (False, 'does not read its input'),
])
def test_a_graph_that_computes_something_else_is_refused(residual, message, tmp_path):
    from mmpretrain.registry import MODELS
    MODELS.register_module(module=CopyIntoEmpty, force=True)
    cfg = Config(
        dict(
            default_scope='mmpretrain',
            model=dict(
                type='ImageClassifier',
                backbone=dict(type='CopyIntoEmpty', residual=residual),
                neck=dict(type='GlobalAveragePooling'),
                head=dict(type='LinearClsHead', num_classes=4, in_channels=8))))
    with pytest.raises(ExportCheckError, match=message):
        export_onnx(cfg, str(tmp_path / 'wrong.onnx'), (32, 32))
    assert not list(tmp_path.iterdir())  # neither the file nor a temporary one is left


def test_custom_ops_are_refused():
    node = onnx.helper.make_node('DeformConv2d', ['x'], ['y'], domain='mmcv')
    graph = onnx.helper.make_graph([node], 'g', [], [])
    with pytest.raises(ExportCheckError, match=r"\['mmcv::DeformConv2d'\]"):
        check_default_domain(onnx.helper.make_model(graph))


@pytest.fixture
def export_tool(load_tool, monkeypatch):
    """tools/deployment/export_onnx.py whose export fails the test if it starts: what the tool
    checks up front must be refused before."""
    tool = load_tool('deployment/export_onnx.py')

    def export(*args):
        raise AssertionError('the export started')

    monkeypatch.setattr(tool, 'export_onnx', export)
    return tool


def test_output_that_cannot_be_written_is_refused_up_front(export_tool, tmp_path, monkeypatch):
    from mmxformer.cli import UsageError
    blocker = tmp_path / 'a_file'
    blocker.write_text('')
    existing = tmp_path / 'earlier.onnx'
    existing.write_bytes(b'earlier export')
    cases = [
        (tmp_path, 'is a directory'),
        (blocker / 'm.onnx', f'{blocker} is a file, not a directory'),
        (existing, 'exists; pass --overwrite'),
    ]
    if osp.isdir('/proc/self'):
        cases.append(('/proc/m.onnx', 'no file can be created in /proc'))
    argv = [osp.join(ROOT, CLASSIFIER[0]), '--shape', '64', '64']
    for out, message in cases:
        with pytest.raises(UsageError, match=message):
            export_tool.main([*argv, '--out', str(out)])
    assert existing.read_bytes() == b'earlier export'
    with pytest.raises(AssertionError, match='the export started'):
        export_tool.main([*argv, '--out', str(existing), '--overwrite'])

    monkeypatch.setenv('MMXFORMER_HOME', str(blocker))
    with pytest.raises(UsageError, match=f'MMXFORMER_HOME.*{blocker} is a file'):
        export_tool.main([
            *argv[:1], 'http://127.0.0.1:9/x_20260101-e8518bb3.pth', *argv[1:], '--out',
            str(tmp_path / 'new.onnx')
        ])
    with pytest.raises(UsageError, match='multiples of 32'):
        export_tool.main([
            osp.join(ROOT, DETECTOR[0]), '--shape', '64', '64', '--dynamic', '--check-shape', '64',
            '80', '--out',
            str(tmp_path / 'new.onnx')
        ])


def test_output_under_proc_is_one_line(run_tool, tmp_path):
    result = run_tool(
        'deployment/export_onnx.py',
        osp.join(ROOT, CLASSIFIER[0]),
        '--shape',
        '64',
        '64',
        '--out',
        '/proc/m.onnx',
        cwd=tmp_path)
    assert result.returncode == 1 and 'Traceback' not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        'error: --out /proc/m.onnx: no file can be created in /proc')


def test_what_cannot_be_exported_is_one_line_before_the_export(load_tool, tmp_path, monkeypatch):
    from mmxformer.cli import UsageError
    from mmxformer.deployment.export import onnx as export
    tool = load_tool('deployment/export_onnx.py')
    out = tmp_path / 'm.onnx'
    monkeypatch.setattr(export, 'trace_to_onnx', lambda *args: pytest.fail('exported'))
    cases = [
        (['--shape', '100000', '100000'],
         r'an input of \(1, 3, 100000, 100000\) needs at least [\d.]+ GiB for the tensors of one '
         r'forward pass of the model, and this machine has [\d.]+ GiB free: use a smaller input '
         'shape'),
        ([str(tmp_path / 'missing.pth'), '--shape', '64',
          '64'], f'{tmp_path}/missing.pth: no such checkpoint file'),
        (['--shape', '64', '64', '--opset',
          '99'], r'ONNX opset 99: torch .* exports opsets 7 to \d+ \(default 17\)'),
    ]
    for args, message in cases:
        with pytest.raises(SystemExit, match=f'^Export failed, {out} not written: {message}$'):
            tool.main([osp.join(ROOT, CLASSIFIER[0]), *args, '--out', str(out)])
    with pytest.raises(UsageError, match='^Config file missing.py does not exist'):
        tool.main(['missing.py', '--shape', '64', '64', '--out', str(out)])
    checkpoint = tmp_path / 'classifier.pth'
    torch.save(dict(state_dict=build_network(config(*CLASSIFIER)).model.state_dict()), checkpoint)
    weights = checkpoint.read_bytes()
    with pytest.raises(SystemExit, match=f'{checkpoint} is the checkpoint, which it would replace'):
        tool.main([
            osp.join(ROOT, CLASSIFIER[0]),
            str(checkpoint), '--out',
            str(checkpoint), '--overwrite', '--shape', '64', '64'
        ])
    assert checkpoint.read_bytes() == weights
    assert sorted(p.name for p in tmp_path.iterdir()) == ['classifier.pth']


def test_an_opset_without_an_op_of_the_model_is_named(tmp_path):
    with pytest.raises(
            ExportCheckError,
            match=r"^ONNX opset 11: Exporting the operator 'aten::unflatten' to ONNX opset version "
            r'11 is not supported. Support for this operator was added in version 13'):
        export_onnx(config(*CLASSIFIER), str(tmp_path / 'm.onnx'), (64, 64), opset=11)
    assert not list(tmp_path.iterdir())


def test_the_network_stays_in_eval_mode(tmp_path):
    # torch.onnx.export restores the mode it found: a network in training mode would leave it
    # with its BN layers training (the int8 export then measured its agreement so)
    network = build_network(config(*CLASSIFIER))
    export_onnx(config(*CLASSIFIER), str(tmp_path / 'm.onnx'), (64, 64), network=network)
    assert not [name for name, module in network.named_modules() if module.training]
