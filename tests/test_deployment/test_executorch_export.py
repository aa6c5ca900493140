import os
import os.path as osp

import pytest
import torch

pytest.importorskip(
    'executorch.exir',
    reason='ExecuTorch is not installed (pip install -e '
    "'.[deploy]', requirements/deploy.txt)")
pytest.importorskip(
    'torchao', reason='torchao (PT2E quantization) is not installed '
    '(requirements/deploy.txt)')

from conftest import TINY_ARCH, digits_options  # noqa: E402

from mmxformer.cli import UsageError  # noqa: E402
from mmxformer.deployment.export import executorch as ee  # noqa: E402
from mmxformer.deployment.export.network import ExportCheckError, build_network  # noqa: E402
from mmxformer.deployment.export.onnx import export_onnx  # noqa: E402
from mmxformer.deployment.quantize import pt2e  # noqa: E402
from mmxformer.models import SqueezeExcitation, XFormer, to_runtime_form  # noqa: E402
from mmxformer.utils.config import load_config  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# The digits classifier (XXS), and the detector and segmentor with the tiny backbone (the neck
# and decoder follow its channels).
CLASSIFIER = ('configs/xformer-xxs_digits.py', {}, (32, 32))
DETECTOR = ('configs/xformer_yolov3_digits.py', {
    'model.backbone.arch': dict(TINY_ARCH, _delete_=True),
    'model.neck.in_channels': [16, 16, 16]
}, (64, 64))
SEGMENTOR = ('configs/xformer_mlp-decoder_digits.py', {
    'model.backbone.arch': dict(TINY_ARCH, _delete_=True),
    'model.decode_head.in_channels': [8, 16, 16, 16]
}, (64, 64))


def config(path, options, data_root=None):
    if data_root is not None:
        options = {**options, 'test_dataloader.dataset.data_root': str(data_root)}
    return load_config(osp.join(ROOT, path), options)


def expected_outputs(model, x):
    with torch.no_grad():
        want = model(x)
    return (want, ) if isinstance(want, torch.Tensor) else want  # a segmentor: one tensor


def assert_program_computes(path, want, x):
    got = ee.run_program(ee.load_method(str(path)), x)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-4)


# the classifier: exported from the command line by the classifier_programs fixture
@pytest.mark.parametrize('kind', [DETECTOR, SEGMENTOR], ids=['det', 'seg'])
def test_fp32_program_matches_pytorch_and_runs_in_xnnpack(kind, tmp_path):
    cfg = config(*kind[:2])
    out = tmp_path / 'model.pte'
    torch.manual_seed(1)
    record = ee.export_executorch(cfg, str(out), kind[2])
    assert out.stat().st_size == record['bytes']
    # the ops XNNPACK lacked are gone from the portable kernels
    assert not {'native_layer_norm', 'linalg_vector_norm', 'diagonal_copy'
                } & {name.split('.')[0]
                     for name in record['partition']['portable']}

    # the written file, loaded by ExecuTorch's runtime, computes the model's outputs
    x = torch.rand(1, 3, *kind[2])
    torch.manual_seed(1)  # the initial weights of the export
    assert_program_computes(out, expected_outputs(build_network(cfg), x), x)


def test_a_failed_check_writes_nothing(classifier_programs, tmp_path, monkeypatch):
    # the lowering (a minute) replaced by any program: a negative tolerance fails every check
    program = classifier_programs[2].read_bytes()
    monkeypatch.setattr(ee, 'lower_to_xnnpack', lambda exported: (program, {}))
    with pytest.raises(ExportCheckError, match='max abs difference .* > tolerance'):
        ee.export_executorch(
            config(*CLASSIFIER[:2]), str(tmp_path / 'model.pte'), (32, 32), tolerance=-1.)
    assert os.listdir(tmp_path) == []


def test_a_zero_padding_shares_its_input_quantization():
    # XFormer at 32x32: the last stage's 1x1 map is padded to the 2x2 patch. Unannotated, the
    # pad read a dequantized tensor and XNNPACK failed to build the program (compileModel 0x1).
    model = to_runtime_form(XFormer(TINY_ARCH, out_indices=(4, ))).eval()
    x = torch.randn(1, 3, 32, 32)
    module = torch.export.export(model, (x, )).module()
    quantized = pt2e.quantize_for_xnnpack(module, x, [torch.randn(1, 3, 32, 32)])
    pads = [node for node in quantized.graph.nodes if node.target == torch.ops.aten.pad.default]
    assert pads
    for pad in pads:
        before, (after, ) = pad.args[0], pad.users
        assert 'dequantize_per_tensor' in str(before.target)
        assert 'quantize_per_tensor' in str(after.target)
        assert before.args[1:3] == after.args[1:3]  # the same scale and zero point


@pytest.fixture(scope='module')
def classifier_programs(load_tool, tiny_sets, tmp_path_factory):
    """The digits classifier (XFormer-XXS, 32x32) with the weights of a checkpoint, exported
    from the command line to an fp32 and an int8 program: (config options, checkpoint, fp32
    path, int8 path, what the two exports printed)."""
    import contextlib
    import io
    path, options, shape = CLASSIFIER
    options = {**options, **digits_options('cls', tiny_sets['cls'])}
    cfg_options = [f'{key}={value}' for key, value in options.items()]
    tmp = tmp_path_factory.mktemp('programs')
    checkpoint = tmp / 'weights.pth'
    torch.manual_seed(3)
    torch.save(dict(state_dict=build_network(config(path, options)).model.state_dict()), checkpoint)
    tool = load_tool('deployment/export_executorch.py')
    fp32, int8 = tmp / 'fp32.pte', tmp / 'int8.pte'
    common = [osp.join(ROOT, path), str(checkpoint), '--shape', *map(str, shape)]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        tool.main([*common, '--out', str(fp32)])
        tool.main([
            *common, '--out',
            str(int8), '--int8', '--calib-images', '4', '--cfg-options', *cfg_options
        ])
    return cfg_options, checkpoint, fp32, int8, printed.getvalue()


def test_fp32_program_of_the_classifier(classifier_programs):
    cfg_options, checkpoint, fp32, _, printed = classifier_programs
    fp32_lines = printed.split(f'Wrote {fp32}')[0]
    assert 'ExecuTorch vs PyTorch (fp32), input (1, 3, 32, 32): max abs diff' in fp32_lines
    assert 'XNNPACK delegates: ' in fp32_lines and 'native_layer_norm' not in fp32_lines
    x = torch.rand(1, 3, 32, 32)
    model = build_network(config(*CLASSIFIER[:2]), str(checkpoint))
    assert_program_computes(fp32, expected_outputs(model, x), x)


def test_int8_from_the_command_line(classifier_programs, load_tool, tmp_path):
    cfg_options, checkpoint, fp32, int8, printed = classifier_programs
    assert 'int8 vs fp32 model on test images: images 4, top1_agreement' in printed
    assert f'Wrote {int8}' in printed
    # int8 weights: the file shrinks (the XFA constants and LayerNorms stay float32)
    assert int8.stat().st_size < 0.5 * fp32.stat().st_size

    # the int8 program runs in ExecuTorch's runtime, close to the fp32 model
    x = torch.randn(1, 3, 32, 32)
    got = ee.run_program(ee.load_method(str(int8)), x)[0]
    want = ee.run_program(ee.load_method(str(fp32)), x)[0]
    assert float(((got - want)**2).sum() / (want**2).sum()) < 0.1

    tool = load_tool('deployment/export_executorch.py')
    common = [osp.join(ROOT, CLASSIFIER[0]), str(checkpoint), '--shape', '32', '32']
    # more agreement images than the test set holds (the training set has 20): said, nothing
    # written
    with pytest.raises(SystemExit, match='test set .* it has 10; ask for fewer'):
        tool.main([
            *common, '--out',
            str(tmp_path / 'none.pte'), '--int8', '--calib-images', '11', '--cfg-options',
            *cfg_options
        ])
    assert not (tmp_path / 'none.pte').exists()
    # an existing file is replaced only with --overwrite, before anything is exported
    with pytest.raises(UsageError, match='exists; pass --overwrite'):
        tool.main([*common, '--out', str(fp32)])


def test_programs_evaluated_on_the_test_set(classifier_programs, load_tool, capsys):
    cfg_options, checkpoint, fp32, int8, _ = classifier_programs
    tool = load_tool('deployment/test_deployed.py')
    tool.main([
        osp.join(ROOT, CLASSIFIER[0]),
        str(checkpoint),
        str(fp32),
        str(int8), '--cfg-options', *cfg_options
    ])
    rows = {
        line.split(' | ')[0].lstrip('| '): line.split(' | ')[1:]
        for line in capsys.readouterr().out.splitlines() if line.startswith('| ')
    }
    pytorch = float(rows[f'PyTorch ({checkpoint})'][0])
    top1, difference, agreement, _ = rows[str(fp32)]
    # fp32 in ExecuTorch: PyTorch's predictions
    assert float(top1) == pytorch and float(agreement) == 1.
    top1, difference, agreement, _ = rows[str(int8)]
    assert float(difference) == pytest.approx(float(top1) - pytorch, abs=1e-3)
    assert 0 <= float(agreement) <= 1


def test_a_program_that_cannot_serve_is_refused_before_evaluating(classifier_programs, tiny_sets,
                                                                  tmp_path, monkeypatch):
    from mmxformer.deployment import evaluate as de
    program = classifier_programs[2].read_bytes()
    cut = tmp_path / 'cut.pte'
    cut.write_bytes(program[:len(program) // 2])
    with pytest.raises(
            ValueError,
            match=f'{cut} cannot be loaded: it is an ExecuTorch program cut short: its header '
            f'says {len(program)} bytes, the file has {len(program) // 2} '
            r'\(ExecuTorch: .*\); give a .pte file written by '
            'tools/deployment/export_executorch.py'):
        de.DeployedNetwork(str(cut))
    onnx_file = tmp_path / 'model.pte'
    export_onnx(config(*CLASSIFIER[:2]), str(tmp_path / 'model.onnx'), (32, 32))
    onnx_file.write_bytes((tmp_path / 'model.onnx').read_bytes())
    with pytest.raises(ValueError, match='it looks like an ONNX file: name it .onnx'):
        de.DeployedNetwork(str(onnx_file))

    # the classifier's program given with the detector's config: its outputs tell
    monkeypatch.setattr(de.DeployedNetwork, '__call__', lambda *args: pytest.fail('evaluated'))
    path, options, _ = DETECTOR
    cfg = config(path, {**options, **digits_options('det', tiny_sets['det'])})
    checkpoint = tmp_path / 'detector.pth'
    torch.save(dict(state_dict=build_network(cfg).model.state_dict()), checkpoint)
    with pytest.raises(
            ValueError,
            match=r'fp32.pte is not an export of the model of xformer_yolov3_digits.py: it gives '
            r'1 output: \(1, 10\); the model gives 3 outputs: pred_map_0 \(1, 45, 5, 5\), .*; '
            r"its outputs look like a classifier's logits \(10 classes\)$"):
        de.evaluate_deployed(cfg, str(checkpoint), [str(classifier_programs[2])])


def test_what_cannot_be_exported_is_refused_before_the_export(classifier_programs, tmp_path,
                                                              monkeypatch):
    cfg_options, checkpoint, *_ = classifier_programs
    monkeypatch.setattr(torch.export, 'export', lambda *args: pytest.fail('exported'))
    cfg = config(*CLASSIFIER[:2])
    out = tmp_path / 'model.pte'
    with pytest.raises(
            ValueError,
            match=r'an input of \(1, 3, 100000, 100000\) needs at '
            r'least .* GiB for the tensors of one forward pass of the model'):
        ee.export_executorch(cfg, str(out), (100000, 100000))
    with pytest.raises(ValueError, match=r'train set .* asked for, but it has 20; ask for fewer'):
        ee.export_executorch(
            load_config(
                osp.join(ROOT, CLASSIFIER[0]), dict(item.split('=', 1) for item in cfg_options)),
            str(out), (32, 32),
            int8=True,
            calib_images=21)
    copy = tmp_path / 'weights.pth'
    copy.write_bytes(checkpoint.read_bytes())
    with pytest.raises(ValueError, match='weights.pth is the checkpoint, which it would replace'):
        ee.export_executorch(cfg, str(copy), (32, 32), str(copy))
    assert copy.read_bytes() == checkpoint.read_bytes()
    assert sorted(os.listdir(tmp_path)) == ['weights.pth']


def quantized_tiny_xformer(**variant):
    """A tiny XFormer in its runtime form, exported, and after PT2E with the XNNPACK quantizer;
    and its input."""
    torch.manual_seed(0)
    model = to_runtime_form(XFormer(TINY_ARCH, out_indices=(4, ), **variant).eval())
    x = torch.rand(1, 3, 64, 64)
    exported = torch.export.export(model, (x, ))
    quantized = pt2e.quantize_for_xnnpack(exported.module(), x,
                                          [torch.rand_like(x) for _ in range(2)])
    return model, exported, quantized, x


def lowered_int8(quantized, x):
    """The XNNPACK program of a quantized graph and its partition summary, checked to compute
    that graph (the exporters' int8 check)."""
    program, summary = ee.lower_to_xnnpack(torch.export.export(quantized, (x, )))
    with torch.no_grad():
        want = quantized(x)
    ee.compare(ee.load_method(program), x, want, pt2e.INT8_TOLERANCE * float(want[0].abs().max()))
    return program, summary


def test_the_relu_variant_runs_int8_between_its_layers():
    # configs/*-relu*.py's backbone after PT2E with the XNNPACK quantizer: no activation or norm
    # left in float32 (what SiLU, GELU and the LayerNorms of the paper's model are), and the
    # lowered program computes the quantized graph
    import re
    model, _, quantized, x = quantized_tiny_xformer(
        act_cfg=dict(type='ReLU'),
        transformer_act_cfg=dict(type='ReLU'),
        transformer_norm_cfg=dict(type='TokenBatchNorm'))
    ops = [str(node.target) for node in quantized.graph.nodes if node.op == 'call_function']
    assert any('relu' in op for op in ops)
    assert not [op for op in ops if re.search('silu|gelu|hardswish|_norm', op)]
    # the one sigmoid left is the squeeze-excitation gate's, on one value per channel
    gates = sum(isinstance(m, SqueezeExcitation) for m in model.modules())
    assert [op for op in ops if 'sigmoid' in op] == ['aten.sigmoid.default'] * gates
    assert lowered_int8(quantized, x)[1]['delegates'] >= 1


def called_in(node, kind):
    """Whether an FX node of an exported program was called in a module of this type
    (``torch.export`` records the modules in ``nn_module_stack``, their types as classes or as
    qualified names)."""
    name = f'{kind.__module__}.{kind.__qualname__}'
    stack = node.meta.get('nn_module_stack') or {}
    return any(module in (kind, name) for _, module in stack.values())


def test_the_attention_projection_runs_in_int8():
    # XFA's qkv projection reads int8 tokens and int8 weights and writes int8, which XFA's
    # float32 mixing dequantizes (docs/int8.md: the largest float32 operator of the int8 programs)
    from mmxformer.models.layers import RuntimeCrossFeatureAttention, RuntimeCrossFeatureMixing
    model, _, quantized, x = quantized_tiny_xformer()
    attentions = sum(isinstance(m, RuntimeCrossFeatureAttention) for m in model.modules())
    projections = [
        n for n in quantized.graph.nodes
        if n.target == torch.ops.aten.linear.default and called_in(n, RuntimeCrossFeatureAttention)
        and not called_in(n, RuntimeCrossFeatureMixing)
    ]
    assert attentions and len(projections) == attentions
    for linear in projections:
        tokens, weight = linear.args[:2]
        assert 'dequantize_per_tensor' in str(tokens.target)
        assert 'dequantize_per_channel' in str(weight.target)
        assert [str(user.target)
                for user in linear.users] == ['quantized_decomposed.quantize_per_tensor.default']
    # the mixing computes in float32: int8 reaches it only through its slices and reshapes of
    # the projection's output (which PT2E quantizes as their input, exactly), and leaves it only
    # at its output, which the next int8 layer reads
    arithmetic = [
        n for n in quantized.graph.nodes
        if called_in(n, RuntimeCrossFeatureMixing) and n.target not in (
            torch.ops.aten.slice.Tensor, torch.ops.aten.reshape.default)
    ]
    outputs = [n for n in arithmetic if any('quantize_per' in str(u.target) for u in n.users)]
    assert len(arithmetic) > len(outputs) == attentions
    for output in outputs:
        (quantize, ) = output.users
        assert not [user for user in quantize.users if called_in(user, RuntimeCrossFeatureMixing)]
    lowered_int8(quantized, x)


def test_the_paper_model_runs_silu_in_int8():
    # The SiLUs after the convolutions (mmcv's, in place) and the gates' sigmoids: int8 in
    # XNNPACK, not float32 between two conversions (docs/int8.md: half of XFormer-S's int8 time
    # at 1024x1024)
    from mmxformer.analysis.executorch_profile import profile_program
    silu = (torch.ops.aten.silu.default, torch.ops.aten.silu_.default)
    model, exported, quantized, x = quantized_tiny_xformer()
    assert any(node.target in silu for node in exported.graph.nodes)
    assert not [node for node in quantized.graph.nodes if node.target in silu]
    sigmoids = [n for n in quantized.graph.nodes if n.target == torch.ops.aten.sigmoid.default]
    assert len(sigmoids) > sum(isinstance(m, SqueezeExcitation) for m in model.modules())
    for sigmoid in sigmoids:
        (quantize, ) = sigmoid.users
        assert 'dequantize_per_tensor' in str(sigmoid.args[0].target)
        assert 'quantize_per_tensor' in str(quantize.target)
        assert quantize.args[1:3] == (1 / 256, -128)
        # the product reads the sigmoid with that quantization, not requantized
        for dequantize in quantize.users:
            assert dequantize.args[1:3] == (1 / 256, -128)
            assert [user.target for user in dequantize.users] == [torch.ops.aten.mul.Tensor]
    program, _ = lowered_int8(quantized, x)
    # XNNPACK's own record of what it ran: its sigmoid operator (float32, between conversions
    # in an int8 program) only in the float32 program
    fp32 = ee.lower_to_xnnpack(exported)[0]
    assert 'Sigmoid (NC)' in profile_program(fp32, x, runs=1)['operators']
    assert 'Sigmoid (NC)' not in profile_program(program, x, runs=1)['operators']
