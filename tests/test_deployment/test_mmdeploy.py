"""mmdeploy 1.3.1's conversion to ONNX Runtime of the three digits models, with the deploy
configs of configs/mmdeploy/, checked against PyTorch: classifier scores and segmentor logits
within 1e-4, the detector's end-to-end graph (with mmdeploy's NMS) against mmdet's
``inference_detector``."""
import glob
import os.path as osp

import onnx
import pytest
import torch
from mmengine.config import Config
from mmengine.structures import InstanceData

from mmxformer.deployment.mmdeploy.check import check_records, compare_with_pytorch
from mmxformer.deployment.mmdeploy.compat import torchscript_onnx_export
from mmxformer.tasks.base import BackendMismatchError
from mmxformer.tasks.detection import compare_detections
from mmxformer.utils.config import build_model

pytestmark = pytest.mark.needs('mmdeploy', 'mmdet', 'mmseg', 'mmpretrain')

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEPLOY = osp.join(ROOT, 'configs', 'mmdeploy')
DIGITS_CLASSES = tuple(str(digit) for digit in range(10))


@pytest.fixture(scope='module')
def convert(load_tool):
    return load_tool('deployment/mmdeploy_convert.py').convert


def deploy_config(name):
    return Config.fromfile(osp.join(DEPLOY, name))


def model_config(name, options=None):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', name))
    cfg.merge_from_dict(options or {})
    return cfg


def save_checkpoint(cfg, path, classes):
    """Seeded PyTorch-default weights of the config's model, saved as a training run would."""
    torch.manual_seed(0)
    model = build_model(cfg)
    torch.save(
        dict(state_dict=model.state_dict(), meta=dict(dataset_meta=dict(classes=classes))), path)
    return str(path)


def graph_of(path):
    graph = onnx.load(path)
    onnx.checker.check_model(graph)
    return graph


def domains(graph):
    return {node.domain for node in graph.graph.node}


def test_torch_onnx_export_defaults_to_torchscript_inside(monkeypatch):
    calls = []

    def export(*args, **kwargs):
        calls.append(kwargs)

    monkeypatch.setattr(torch.onnx, 'export', export)
    with torchscript_onnx_export():
        torch.onnx.export('model', (), 'model.onnx', opset_version=17)
        torch.onnx.export('model', (), 'model.onnx', dynamo=True)
        assert torch.onnx.export.__wrapped__ is export
    assert torch.onnx.export is export
    assert calls == [dict(opset_version=17, dynamo=False), dict(dynamo=True)]


def test_torch_onnx_export_is_restored_when_the_export_fails(monkeypatch):

    def export(*args, **kwargs):
        raise RuntimeError('export failed')

    monkeypatch.setattr(torch.onnx, 'export', export)
    with pytest.raises(RuntimeError, match='export failed'), torchscript_onnx_export():
        torch.onnx.export('model', (), 'model.onnx')
    assert torch.onnx.export is export


DEPLOY_CONFIGS = [
    ('classification_onnxruntime_static-256x256.py', 17, [256, 256]),
    ('classification_onnxruntime_static-32x32.py', 17, [32, 32]),
    ('detection_onnxruntime_static-320x320.py', 17, [320, 320]),
    ('detection_onnxruntime_static-160x160.py', 17, [160, 160]),
    ('segmentation_onnxruntime_static-1024x2048.py', 17, [2048, 1024]),
    ('segmentation_onnxruntime_static-128x256.py', 17, [256, 128]),
]


def test_every_deploy_config_is_tested():
    assert sorted(glob.glob(osp.join(DEPLOY, '*.py'))) == sorted(
        osp.join(DEPLOY, name) for name, _, _ in DEPLOY_CONFIGS)


@pytest.mark.parametrize('name,opset_version,shape', DEPLOY_CONFIGS)
def test_deploy_configs_load_without_mmdeploys_repository(name, opset_version, shape):
    from mmdeploy.utils import get_backend, get_input_shape, get_ir_config, load_config
    cfg, = load_config(osp.join(DEPLOY, name))
    assert get_backend(cfg).value == 'onnxruntime'
    assert get_ir_config(cfg)['opset_version'] == opset_version
    assert get_input_shape(cfg) == shape


def test_classifier_converts_with_the_tool(run_tool, tiny_sets, tmp_path):
    config = osp.join(ROOT, 'configs', 'xformer-xxs_digits.py')
    checkpoint = save_checkpoint(
        model_config('xformer-xxs_digits.py'), tmp_path / 'cls.pth', DIGITS_CLASSES)
    images = sorted(glob.glob(osp.join(tiny_sets['cls'], 'test', '*', '*.png')))
    work_dir = tmp_path / 'work'
    args = (osp.join(DEPLOY, 'classification_onnxruntime_static-32x32.py'), config, checkpoint,
            images[0], '--work-dir', str(work_dir), '--test-img', *images)
    result = run_tool('deployment/mmdeploy_convert.py', *args, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith('backend vs')]
    assert len(lines) == len(images)
    graph = graph_of(work_dir / 'end2end.onnx')
    assert graph.opset_import[0].version == 17
    assert domains(graph) == {''}
    # no file is replaced without --overwrite
    mtime = (work_dir / 'end2end.onnx').stat().st_mtime_ns
    again = run_tool('deployment/mmdeploy_convert.py', *args, cwd=tmp_path)
    assert again.returncode == 1
    assert 'exists: pass --overwrite' in again.stderr
    assert (work_dir / 'end2end.onnx').stat().st_mtime_ns == mtime

    # the figures: scores within 1e-4 of PyTorch's; other weights are told apart
    deploy_cfg = deploy_config('classification_onnxruntime_static-32x32.py')
    model_cfg = model_config('xformer-xxs_digits.py')
    records = compare_with_pytorch(deploy_cfg, model_cfg, checkpoint,
                                   [str(work_dir / 'end2end.onnx')], images)
    assert max(record['max_abs_diff'] for record in records) <= 1e-4
    state = torch.load(checkpoint, weights_only=True)
    state['state_dict']['head.fc.bias'] += torch.arange(10.) * 1e-2
    torch.save(state, tmp_path / 'other.pth')
    other = compare_with_pytorch(deploy_cfg, model_cfg, str(tmp_path / 'other.pth'),
                                 [str(work_dir / 'end2end.onnx')], images)
    with pytest.raises(BackendMismatchError, match='max abs difference'):
        check_records(other)


def test_tool_refuses_other_backends(convert, tmp_path):
    cfg = deploy_config('classification_onnxruntime_static-32x32.py')
    cfg.backend_config = dict(type='tensorrt')
    with pytest.raises(ValueError, match='for the tensorrt backend'):
        convert(cfg, model_config('xformer-xxs_digits.py'), 'unused.pth', 'unused.png',
                str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_what_cannot_be_converted_is_refused_before_the_export(convert, tiny_sets, tmp_path,
                                                               load_tool, monkeypatch):
    import mmdeploy.apis
    monkeypatch.setattr(mmdeploy.apis, 'torch2onnx', lambda *args, **kwargs: pytest.fail('export'))
    deploy_cfg = osp.join(DEPLOY, 'classification_onnxruntime_static-32x32.py')
    model_cfg = osp.join(ROOT, 'configs', 'xformer-xxs_digits.py')
    checkpoint = save_checkpoint(
        model_config('xformer-xxs_digits.py'), tmp_path / 'cls.pth', DIGITS_CLASSES)
    detector = save_checkpoint(
        model_config('xformer_yolov3_digits.py', DETECTOR_OPTIONS), tmp_path / 'det.pth',
        DIGITS_CLASSES)
    image = sorted(glob.glob(osp.join(tiny_sets['cls'], 'test', '*', '*.png')))[0]
    work_dir = str(tmp_path / 'work')
    cases = [
        ((deploy_cfg, 'missing.py', checkpoint, image), 'model config missing.py: no such file'),
        ((deploy_cfg, model_cfg, 'missing.pth', image), 'checkpoint missing.pth: no such file'),
        ((deploy_cfg, model_cfg, checkpoint, 'missing.png'), 'image missing.png: no such file'),
        ((deploy_cfg, model_cfg, detector, image), 'det.pth does not fit ImageClassifier'),
    ]
    main = load_tool('deployment/mmdeploy_convert.py').main
    for args, message in cases:
        with pytest.raises(SystemExit, match=f'^Not converted: .*{message}'):
            main([*args, '--work-dir', work_dir])
    with pytest.raises(FileNotFoundError, match='test image missing.png: no such file'):
        convert(deploy_cfg, model_cfg, checkpoint, image, work_dir, [image, 'missing.png'])
    assert not osp.exists(work_dir)


# XXS backbone, the decoder's inputs following its channels: a faster export.
SEGMENTOR_OPTIONS = {
    'model.backbone.arch': 'xxsmall',
    'model.decode_head.in_channels': [24, 48, 64, 80]
}


@pytest.mark.parametrize('with_argmax', [True, False])
def test_segmentor_agrees_with_pytorch(convert, tiny_sets, tmp_path, with_argmax):
    model_cfg = model_config('xformer_mlp-decoder_digits.py', SEGMENTOR_OPTIONS)
    checkpoint = save_checkpoint(model_cfg, tmp_path / 'seg.pth', ('background', ) + DIGITS_CLASSES)
    deploy_cfg = deploy_config('segmentation_onnxruntime_static-128x256.py')
    deploy_cfg.codebase_config.with_argmax = with_argmax
    images = sorted(glob.glob(osp.join(tiny_sets['seg'], 'leftImg8bit', 'val', '*', '*.png')))
    target, records = convert(deploy_cfg, model_cfg, checkpoint, images[0], str(tmp_path), images)
    assert len(records) == len(images) == 2
    for record in records:
        assert record['label_mismatches'] == 0
        assert record['label_agreement'] > 0.999
    if not with_argmax:
        assert max(record['max_abs_diff'] for record in records) <= 1e-4
    output, = graph_of(target).graph.output
    dims = [dim.dim_value for dim in output.type.tensor_type.shape.dim]
    assert dims == ([1, 1, 128, 256] if with_argmax else [1, 11, 128, 256])


DETECTOR_OPTIONS = {
    'model.backbone.arch': 'xxsmall',
    'model.neck.in_channels': [80, 64, 48],
    # mmdet keeps the nms_pre (box, class) pairs of the best class scores, before the
    # objectness multiplies them; mmdeploy's graph ranks by the products. Of untrained weights
    # thousands of pairs pass score_thr, so that both keep the same only when nms_pre keeps
    # all of them (160x160: 1575 boxes x 10 classes).
    'model.test_cfg.nms_pre': 15750,
}


def test_detector_gives_the_detections_of_inference_detector(convert, tiny_sets, tmp_path):
    from mmdeploy.apis.utils import build_task_processor
    from mmdeploy.utils import get_input_shape
    from mmdet.apis import inference_detector, init_detector
    model_cfg = model_config('xformer_yolov3_digits.py', DETECTOR_OPTIONS)
    checkpoint = save_checkpoint(model_cfg, tmp_path / 'det.pth', DIGITS_CLASSES)
    deploy_cfg = deploy_config('detection_onnxruntime_static-160x160.py')
    images = sorted(glob.glob(osp.join(tiny_sets['det'], 'val2017', '*.jpg')))
    target, _ = convert(deploy_cfg, model_cfg, checkpoint, images[0], str(tmp_path))
    graph = graph_of(target)
    assert [output.name for output in graph.graph.output] == ['dets', 'labels']
    assert 'NonMaxSuppression' in {node.op_type for node in graph.graph.node}
    assert domains(graph) == {''}

    task_processor = build_task_processor(model_cfg, deploy_cfg, 'cpu')
    backend_model = task_processor.build_backend_model([target])
    detector = init_detector(model_cfg, checkpoint, device='cpu')
    for image in images:
        expected = inference_detector(detector, image).pred_instances
        data, _ = task_processor.create_input(image, get_input_shape(deploy_cfg))
        with torch.no_grad():
            actual = backend_model.test_step(data)[0].pred_instances
        record = compare_detections(expected, actual, model_cfg.model.test_cfg.score_thr)
        assert record['num_expected'] == record['num_actual'] == record['matched'] > 0, record
        assert record['unmatched'] == []
        assert record['min_iou'] >= 0.99
        assert record['max_score_diff'] <= 1e-3


def detections(boxes, scores, labels):
    return InstanceData(
        bboxes=torch.tensor(boxes, dtype=torch.float32),
        scores=torch.tensor(scores),
        labels=torch.tensor(labels))


def test_detections_are_matched_one_to_one():
    expected = detections([[0, 0, 10, 10], [20, 20, 40, 40], [0, 0, 5, 5]], [0.9, 0.8, 0.01],
                          [1, 2, 3])
    same = detections([[20, 20, 40, 40.01], [0, 0, 10, 10]], [0.8, 0.9002], [2, 1])
    record = compare_detections(expected, same, score_thr=0.05)
    assert (record['num_expected'], record['num_actual'], record['matched']) == (2, 2, 2)
    assert record['min_iou'] > 0.999 and record['max_score_diff'] == pytest.approx(2e-4, rel=1e-3)
    check_records([dict(image='a', **record)])

    shifted = detections([[1, 0, 11, 10], [20, 20, 40, 40]], [0.9, 0.8], [1, 2])
    relabelled = detections([[0, 0, 10, 10], [20, 20, 40, 40]], [0.9, 0.8], [1, 3])
    for actual, message in [(shifted, 'IoU of 0.8182'), (relabelled, 'without a match')]:
        with pytest.raises(BackendMismatchError, match=message):
            check_records([dict(image='a', **compare_detections(expected, actual, 0.05))])


def test_detections_at_the_score_threshold_may_be_in_one_list_only():
    expected = detections([[0, 0, 10, 10], [20, 20, 40, 40]], [0.9, 0.0502], [1, 2])
    actual = detections([[0, 0, 10, 10], [20, 20, 40, 40]], [0.9, 0.0499], [1, 2])
    record = compare_detections(expected, actual, score_thr=0.05)
    assert record['matched'] == 1 and record['unmatched'] == []
    expected.scores[1] = 0.06
    record = compare_detections(expected, actual, score_thr=0.05)
    assert record['unmatched'] == [('pytorch', 2, pytest.approx(0.06))]
