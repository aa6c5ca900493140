import copy
import json
import os.path as osp

import numpy as np
import pytest
import torch
from conftest import digits_options
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmengine.structures import InstanceData

from mmxformer.cli import UsageError
from mmxformer.deployment import evaluate as de
from mmxformer.deployment.export.network import build_network
from mmxformer.deployment.export.onnx import export_onnx
from mmxformer.tasks import DetectionTask
from mmxformer.utils.config import load_config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# The digits configs with the XXS backbone (the necks and decoder follow its channels).
XXS = {
    'cls': ('configs/xformer-xxs_digits.py', {}),
    'det': (
        'configs/xformer_yolov3_digits.py',
        {
            'model.backbone.arch': 'xxsmall',
            'model.neck.in_channels': [80, 64, 48],
            # every (box, class) pair of an untrained head into NMS, as in mmdeploy's graph
            'model.test_cfg.nms_pre': 15750,
        }),
    'seg': ('configs/xformer_mlp-decoder_digits.py', {
        'model.backbone.arch': 'xxsmall',
        'model.decode_head.in_channels': [24, 48, 64, 80]
    }),
}


def config(task, data_root):
    path, options = XXS[task]
    return load_config(osp.join(ROOT, path), {**options, **digits_options(task, data_root)})


@pytest.mark.parametrize('task', ['cls', 'det', 'seg'])
def test_predictions_from_the_outputs_are_the_toolboxs_own(task, tiny_sets):
    cfg = config(task, tiny_sets[task])
    network = build_network(cfg)
    model, adapter = network.model, network.task
    init_default_scope(cfg.default_scope)
    loader = Runner.build_dataloader({
        **cfg.test_dataloader, 'num_workers': 0,
        'persistent_workers': False
    })
    data = next(iter(loader))
    with torch.no_grad():
        want = model.test_step(copy.deepcopy(data))
        batch = model.data_preprocessor(copy.deepcopy(data), False)
        outputs = list(network(batch['inputs']))
    got = adapter.predictions(model, outputs, batch['data_samples'])
    assert len(got) == len(want)
    for g, w in zip(got, want):
        if task == 'cls':
            torch.testing.assert_close(g.pred_score, w.pred_score)
            assert g.pred_label == w.pred_label
        elif task == 'seg':
            assert g.pred_sem_seg.data.shape == w.pred_sem_seg.data.shape == (1, 128, 256)
            assert torch.equal(g.pred_sem_seg.data, w.pred_sem_seg.data)
        else:
            assert len(w.pred_instances) > 0
            for key in ('bboxes', 'scores', 'labels'):
                torch.testing.assert_close(g.pred_instances[key], w.pred_instances[key])
    assert adapter.prediction_agreement(want, got)[0] == \
        adapter.prediction_agreement(want, want)[1]


def detections(boxes, scores, labels):
    return InstanceData(
        bboxes=torch.tensor(boxes, dtype=torch.float),
        scores=torch.tensor(scores),
        labels=torch.tensor(labels))


def sample(instances):
    from mmdet.structures import DetDataSample
    data_sample = DetDataSample()
    data_sample.pred_instances = instances
    return data_sample


@pytest.mark.needs('mmdet')
def test_detections_agree_with_the_same_label_and_overlap():
    reference = detections([[0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 5, 5]], [0.9, 0.8, 0.1],
                           [1, 2, 3])
    cases = [
        (reference, (4, 4)),  # the one under the score threshold does not count
        (detections([[1, 0, 11, 10], [20, 20, 30, 30]], [0.5, 0.4], [1, 2]), (4, 4)),
        (detections([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.8], [1, 5]), (2, 4)),  # label
        (detections([[6, 0, 16, 10]], [0.9], [1]), (0, 3)),  # IoU 0.25
        (detections([[0, 0, 10, 10], [0, 0, 10, 10]], [0.9, 0.8], [1, 1]), (2, 4)),  # one to one
        (detections(torch.zeros(0, 4), [], []), (0, 2)),
    ]
    for deployed, want in cases:
        got = DetectionTask().prediction_agreement([sample(reference)], [sample(deployed)])
        assert got == want, (deployed, got)


@pytest.fixture
def classifier_files(tiny_sets, tmp_path):
    """A checkpoint of the digits classifier, its fp32 ONNX export, and the export of weights
    whose logits are the checkpoint's negated (every top-1 class differs)."""
    cfg = config('cls', tiny_sets['cls'])
    state = build_network(cfg).model.state_dict()
    state['head.fc.bias'].uniform_(-0.1, 0.1)
    checkpoint = tmp_path / 'weights.pth'
    torch.save(dict(state_dict=state), checkpoint)
    negated = dict(state, **{key: -state[key] for key in ('head.fc.weight', 'head.fc.bias')})
    torch.save(dict(state_dict=negated), tmp_path / 'negated.pth')
    same, other = tmp_path / 'same.onnx', tmp_path / 'negated.onnx'
    export_onnx(cfg, str(same), (32, 32), str(checkpoint))
    export_onnx(cfg, str(other), (32, 32), str(tmp_path / 'negated.pth'))
    return cfg, checkpoint, same, other


def test_onnx_files_evaluated_beside_pytorch(classifier_files, tiny_sets, tmp_path, load_tool,
                                             capsys):
    _, checkpoint, same, other = classifier_files
    tool = load_tool('deployment/test_deployed.py')
    out = tmp_path / 'results.json'
    cfg_options = [
        f'{key}={value}' for key, value in digits_options('cls', tiny_sets['cls']).items()
    ]
    argv = [
        osp.join(ROOT, XXS['cls'][0]),
        str(checkpoint),
        str(same),
        str(other), '--out',
        str(out), '--cfg-options', *cfg_options
    ]
    tool.main(argv)
    printed = capsys.readouterr().out
    assert '10 test images; agreement: same top-1 class' in printed
    results = json.loads(out.read_text())
    models = results['models']
    assert results['headline'] == 'accuracy/top1' and results['images'] == 10
    assert models[str(same)]['metrics'] == models['pytorch']['metrics']
    assert models[str(same)]['agreement'] == 1.
    assert models[str(other)]['agreement'] == 0.
    assert models[str(same)]['bytes'] == same.stat().st_size
    assert f'| {same} | ' in printed and f'| {other} | ' in printed

    with pytest.raises(UsageError, match='exists; pass --overwrite'):
        tool.main(argv)


def test_a_file_of_another_input_size_is_refused(classifier_files, tmp_path, load_tool):
    cfg, checkpoint, _, _ = classifier_files
    wrong = tmp_path / 'wrong.onnx'
    export_onnx(cfg, str(wrong), (64, 64), str(checkpoint))
    with pytest.raises(
            ValueError,
            match=r'exported for inputs of 64x64, but the test pipeline '
            r'gives 32x32: .*\(--shape 32 32\)'):
        de.evaluate_deployed(cfg, str(checkpoint), [str(wrong)])
    with pytest.raises(ValueError, match=r'\(.pte\) or an ONNX file \(.onnx\)'):
        de.DeployedNetwork(str(checkpoint))


def test_a_segmentor_file_evaluated_beside_pytorch(tiny_sets, tmp_path):
    cfg = config('seg', tiny_sets['seg'])
    checkpoint = tmp_path / 'weights.pth'
    torch.save(dict(state_dict=build_network(cfg).model.state_dict()), checkpoint)
    onnx_file = tmp_path / 'seg.onnx'
    export_onnx(cfg, str(onnx_file), (128, 256), str(checkpoint))
    results = de.evaluate_deployed(cfg, str(checkpoint), [str(onnx_file)])
    models = json.loads(json.dumps(results))['models']  # plain numbers (mmseg's are NumPy's)
    assert results['headline'] == 'mIoU' and results['images'] == 2
    assert models[str(onnx_file)]['metrics'] == pytest.approx(models['pytorch']['metrics'])
    assert models[str(onnx_file)]['agreement'] > 0.999


def onnx_file(path, outputs, config=None):
    """A small ONNX file of input (1, 3, 32, 32) and outputs ``{name: shape}`` of (1, C) or
    (1, C, S, S) (average pools, 1x1 convs, a flatten), with ``config`` in its metadata as
    export_onnx.py records it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    nodes, inits, values = [], [], []
    for name, shape in outputs.items():
        size = shape[2] if len(shape) == 4 else 1
        nodes += [
            helper.make_node(
                'AveragePool', ['input'], [f'{name}_pool'],
                kernel_shape=[32 // size] * 2,
                strides=[32 // size] * 2),
            helper.make_node('Conv', [f'{name}_pool', f'{name}_weight'],
                             [name if len(shape) == 4 else f'{name}_map'])
        ]
        if len(shape) == 2:
            nodes.append(helper.make_node('Flatten', [f'{name}_map'], [name]))
        inits.append(
            numpy_helper.from_array(np.ones((shape[1], 3, 1, 1), np.float32), f'{name}_weight'))
        values.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
    graph = helper.make_graph(
        nodes, 'g', [helper.make_tensor_value_info('input', TensorProto.FLOAT, [1, 3, 32, 32])],
        values, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    if config:
        model.metadata_props.add(key='config', value=config)
    onnx.save(model, str(path))
    return str(path)


@pytest.fixture
def classifier_checkpoint(tiny_sets, tmp_path):
    cfg = config('cls', tiny_sets['cls'])
    checkpoint = tmp_path / 'weights.pth'
    torch.save(dict(state_dict=build_network(cfg).model.state_dict()), checkpoint)
    return cfg, str(checkpoint)


@pytest.fixture
def nothing_evaluated(monkeypatch):
    """What is checked must be refused before a file runs."""

    def run(self, inputs):
        raise AssertionError(f'{self.path} was evaluated')

    monkeypatch.setattr(de.DeployedNetwork, '__call__', run)


def test_a_file_that_cannot_be_loaded_is_one_line(tmp_path, classifier_checkpoint, load_tool,
                                                  nothing_evaluated, monkeypatch):
    good = open(onnx_file(tmp_path / 'good.onnx', {'logits': (1, 10)}), 'rb').read()
    files = {
        'text.onnx': (b'hello, world\n', r"it is text \('hello, world'...\)"),
        'empty.onnx': (b'', 'the file is empty'),
        'cut.onnx': (good[:len(good) // 2], 'it is damaged or cut short'),
        'weights.onnx': (open(classifier_checkpoint[1],
                              'rb').read(), r'it is a zip archive \(a PyTorch checkpoint\?\)'),
        'program.onnx': (b'\x1c\x00\x00\x00ET12' + bytes(56), 'it is an ExecuTorch program: '
                         'name it .pte'),
    }
    for name, (content, what) in files.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(
                ValueError,
                match=f'{tmp_path / name} cannot be loaded: {what} \\(onnxruntime: .*\\); give '
                r'a .onnx file written by tools/deployment/export_onnx.py or quantize_onnx.py'):
            de.DeployedNetwork(str(tmp_path / name))
    (tmp_path / 'folder.onnx').mkdir()
    for name, message in [('missing.onnx', 'no such file'),
                          ('folder.onnx', 'is a directory, not a file')]:
        with pytest.raises(
                ValueError, match=f'{tmp_path / name}: {message}|'
                f'{tmp_path / name} {message}'):
            de.DeployedNetwork(str(tmp_path / name))

    # from the command line: one line, before the model is built
    monkeypatch.setattr(de, 'build_network', lambda *args: pytest.fail('the model was built'))
    tool = load_tool('deployment/test_deployed.py')
    cfg, checkpoint = classifier_checkpoint
    with pytest.raises(UsageError, match='text.onnx cannot be loaded: it is text'):
        tool.main([cfg.filename, checkpoint, str(tmp_path / 'text.onnx')])
    # a program, where ExecuTorch (an optional extra) is not installed
    from mmxformer.deployment.export.executorch import INSTALL_HINT

    def not_installed(path):
        raise ImportError(INSTALL_HINT)

    monkeypatch.setattr(de, 'load_method', not_installed)
    (tmp_path / 'model.pte').write_bytes(b'program')
    with pytest.raises(UsageError, match=r"^ExecuTorch is not installed: install .*\[deploy\]"):
        tool.main([cfg.filename, checkpoint, str(tmp_path / 'model.pte')])


def test_a_file_of_another_model_is_refused_before_evaluating(tmp_path, classifier_checkpoint,
                                                              nothing_evaluated):
    cfg, checkpoint = classifier_checkpoint
    # YOLOv3's maps of 10 classes, at strides 32, 16, 8
    head_maps = {f'pred_map_{level}': (1, 45, 1 << level, 1 << level) for level in range(3)}
    shapes = r'pred_map_0 \(1, 45, 1, 1\), pred_map_1 \(1, 45, 2, 2\), pred_map_2 \(1, 45, 4, 4\)'
    cases = [
        # the detector's export, with the config it names
        (onnx_file(tmp_path / 'det.onnx', head_maps, 'xformer_yolov3_digits.py'),
         rf'det.onnx is not an export of the model of xformer-xxs_digits.py: it gives 3 outputs: '
         rf'{shapes}; the model gives 1 output: logits \(1, 10\); it was exported from '
         r'xformer_yolov3_digits.py \(its metadata\): evaluate it with that config'),
        # a classifier of other classes, exported from the same config with other options
        (onnx_file(tmp_path / 'in1k.onnx', {'logits': (1, 1000)}, 'xformer-xxs_digits.py'),
         r'gives 1 output: logits \(1, 1000\); the model gives 1 output: logits \(1, 10\); it was '
         r'exported from a config of that name, with other settings'),
        # no metadata: what the outputs look like
        (onnx_file(tmp_path / 'maps.onnx',
                   head_maps), r"; its outputs look like a detector's head maps \(3 levels\)$"),
        (onnx_file(tmp_path / 'named.onnx', {'scores':
                                             (1, 10)}), r'it gives 1 output: scores \(1, 10\)'),
    ]
    for path, message in cases:
        with pytest.raises(ValueError, match=message):
            de.evaluate_deployed(cfg, checkpoint, [path])
    # the same outputs as the model's: evaluated
    fits = onnx_file(tmp_path / 'fits.onnx', {'logits': (1, 10)})
    with pytest.raises(AssertionError, match='fits.onnx was evaluated'):
        de.evaluate_deployed(cfg, checkpoint, [fits])


def test_what_cannot_be_evaluated_is_refused_up_front(tmp_path, classifier_checkpoint, load_tool,
                                                      monkeypatch):
    cfg, checkpoint = classifier_checkpoint
    fits = onnx_file(tmp_path / 'fits.onnx', {'logits': (1, 10)})
    with pytest.raises(ValueError, match='fits.onnx given twice: give each file once'):
        de.evaluate_deployed(cfg, checkpoint, [fits, fits])
    no_test_set = copy.deepcopy(cfg)
    no_test_set.test_dataloader = no_test_set.val_dataloader = None
    with pytest.raises(
            ValueError,
            match='has no test_dataloader nor val_dataloader with a '
            'dataset: the exported files are evaluated on it'):
        de.evaluate_deployed(no_test_set, checkpoint, [fits])
    no_evaluator = copy.deepcopy(cfg)
    no_evaluator.test_evaluator = no_evaluator.val_evaluator = None
    with pytest.raises(ValueError, match='has no test_evaluator'):
        de.evaluate_deployed(no_evaluator, checkpoint, [fits])
    with pytest.raises(ValueError, match='missing.pth: no such checkpoint file'):
        de.evaluate_deployed(cfg, str(tmp_path / 'missing.pth'), [fits])

    # --out naming a file the tool reads: refused even with --overwrite, before anything runs
    tool = load_tool('deployment/test_deployed.py')
    monkeypatch.setattr(tool, 'evaluate_deployed', lambda *args: pytest.fail('evaluated'))
    before = {path: open(path, 'rb').read() for path in (fits, checkpoint)}
    for out, what in [(fits, 'evaluated file 1'), (checkpoint, 'the checkpoint')]:
        with pytest.raises(UsageError, match=f'--out {out} is {what}, which it would replace'):
            tool.main([cfg.filename, checkpoint, fits, '--out', out, '--overwrite'])
    assert before == {path: open(path, 'rb').read() for path in (fits, checkpoint)}
