import glob
import os.path as osp

import numpy as np
import onnx
import pytest
import torch
from conftest import digits_options
from PIL import Image

from mmxformer.data.splits import split_loader_cfg
from mmxformer.deployment.export.network import build_network
from mmxformer.deployment.export.onnx_int8 import export_onnx_int8
from mmxformer.deployment.quantize.calibration import agreement
from mmxformer.utils.config import load_config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CLASSIFIER = 'configs/xformer-xxs_digits.py'
SEGMENTOR = ('configs/xformer_mlp-decoder_digits.py', {
    'model.backbone.arch': 'xxsmall',
    'model.decode_head.in_channels': [24, 48, 64, 80]
})


def classifier_config(data_root):
    return load_config(osp.join(ROOT, CLASSIFIER), digits_options('cls', data_root))


def calibration_inputs(cfg, *args):
    """The calibration inputs of a config, through its model's data preprocessor."""
    from mmxformer.deployment.quantize.calibration import calibration_inputs
    return calibration_inputs(cfg, build_network(cfg).model.data_preprocessor, *args)


@pytest.mark.parametrize('split,count', [('train', 20), ('test', 10)])
def test_calibration_inputs_are_the_preprocessed_images_of_a_split(tiny_sets, split, count):
    cfg = classifier_config(tiny_sets['cls'])
    images = calibration_inputs(cfg, 3, (32, 32), split)
    assert len(images) == 3 and all(x.shape == (1, 3, 32, 32) for x in images)
    # the split's first image (the set's order: by class folder, then name), through the
    # preprocessor's mean/std and BGR -> RGB
    first = sorted(glob.glob(osp.join(tiny_sets['cls'], split, '*', '*.png')))[0]
    rgb = torch.from_numpy(np.asarray(Image.open(first).convert('RGB'), dtype=np.float32))
    pre = cfg.data_preprocessor
    want = (rgb - torch.tensor(pre.mean)) / torch.tensor(pre.std)
    torch.testing.assert_close(images[0][0].permute(1, 2, 0), want, rtol=0, atol=1e-4)
    assert not torch.equal(images[0], images[1])

    with pytest.raises(ValueError, match=f'{split} set of .* it has {count}; ask for fewer'):
        calibration_inputs(cfg, count + 1, (32, 32), split)


def test_training_images_are_read_without_augmentation(tiny_sets):
    # the detector's training set, whose pipeline distorts colours at random, inside a
    # RepeatDataset as the COCO recipe has it
    cfg = load_config(
        osp.join(ROOT, 'configs/xformer_yolov3_digits.py'), digits_options('det', tiny_sets['det']))
    cfg.train_dataloader.dataset = dict(
        type='RepeatDataset', times=3, dataset=cfg.train_dataloader.dataset)
    loader_cfg = split_loader_cfg(cfg, 'train')
    assert loader_cfg['dataset']['type'] == 'RepeatDataset'
    assert loader_cfg['dataset']['dataset']['pipeline'] == cfg.test_dataloader.dataset.pipeline
    assert 'PhotoMetricDistortion' in str(cfg.train_dataloader.dataset.dataset.pipeline)
    first, again = (calibration_inputs(cfg, 2, (160, 160)) for _ in range(2))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        split_loader_cfg(cfg, 'val')


def test_calibration_inputs_are_resized_to_the_export_shape(tiny_sets):
    path, options = SEGMENTOR
    cfg = load_config(osp.join(ROOT, path), {**options, **digits_options('seg', tiny_sets['seg'])})
    images = calibration_inputs(cfg, 2, (64, 96))
    assert [tuple(x.shape) for x in images] == [(1, 3, 64, 96)] * 2


def test_agreement_counts_the_same_predictions():
    model = build_network(load_config(osp.join(ROOT, CLASSIFIER)))
    inputs = [torch.randn(1, 3, 32, 32) for _ in range(4)]
    same = agreement(model, lambda x: list(model(x)), inputs)
    assert same == {'images': 4, 'top1_agreement': 1., 'sqnr_db': float('inf')}

    def other_class(x):
        logits = model(x)[0]
        return [
            logits + 100 * torch.nn.functional.one_hot(
                (logits.argmax(1) + 1) % logits.shape[1], logits.shape[1])
        ]

    other = agreement(model, other_class, inputs)
    assert other['top1_agreement'] == 0. and other['sqnr_db'] < 0


def test_int8_onnx_of_the_classifier(tiny_sets, tmp_path):
    import onnxruntime as ort
    cfg = classifier_config(tiny_sets['cls'])
    # the same weights for the export and the reference: a checkpoint outside tmp_path
    checkpoint = tmp_path.parent / f'{tmp_path.name}_weights.pth'
    torch.save(dict(state_dict=build_network(cfg).model.state_dict()), checkpoint)
    out = tmp_path / 'int8.onnx'
    record = export_onnx_int8(cfg, str(out), (32, 32), checkpoint=str(checkpoint), calib_images=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['int8.onnx']  # no leftovers
    # int8 weights; the per-channel scales, the float LayerNorms and the graph stay: 0.52 measured
    assert record['bytes'] == out.stat().st_size < 0.6 * record['fp32_bytes']
    assert record['agreement']['images'] == 4

    session = ort.InferenceSession(str(out), providers=['CPUExecutionProvider'])
    graph = onnx.load(str(out)).graph
    made_by = {output: node.op_type for node in graph.node for output in node.output}
    # onnxruntime runs a convolution, a linear or a pooling in int8 only where its inputs (and
    # weights and bias) all come dequantized: none is left in float32, as the convolutions whose
    # bias the TorchScript export computes were before the graph was optimized
    int8_ops = [
        node for node in graph.node
        if node.op_type in ('Conv', 'MatMul', 'Gemm', 'GlobalAveragePool')
    ]
    assert int8_ops and all(
        made_by.get(name) == 'DequantizeLinear' for node in int8_ops for name in node.input)
    # and it has no int8 mean: the squeeze-excitations pool instead
    assert 'ReduceMean' not in {node.op_type for node in graph.node}
    x = calibration_inputs(cfg, 1, (32, 32), 'test')[0]
    got = torch.from_numpy(session.run(None, {'input': x.numpy()})[0])
    with torch.no_grad():
        want = build_network(cfg, str(checkpoint))(x)[0]
    # int8 noise, not another function: the logits stay close to the fp32 ones
    assert float(((got - want)**2).sum() / (want**2).sum()) < 0.1


def test_int8_of_a_shape_too_large_for_the_memory_is_refused_first(tiny_sets, tmp_path,
                                                                   monkeypatch):
    from mmxformer.deployment.export import onnx_int8
    monkeypatch.setattr(onnx_int8, 'calibration_inputs', lambda *args: pytest.fail('calibrated'))
    with pytest.raises(ValueError, match=r'an input of \(1, 3, 100000, 100000\) needs at least'):
        export_onnx_int8(
            classifier_config(tiny_sets['cls']), str(tmp_path / 'int8.onnx'), (100000, 100000))
    assert not list(tmp_path.iterdir())
