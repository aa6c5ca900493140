import copy
import json
import os.path as osp

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
