import json
import os.path as osp

import pytest
import torch
from conftest import TINY_ARCH

from mmxformer.analysis import benchmark as bm


def test_parse_size():
    assert bm.parse_size('512') == (512, 512)
    assert bm.parse_size('1024x2048') == (1024, 2048)
    with pytest.raises(ValueError, match='HxW'):
        bm.parse_size('1024*2048')


def test_attention_map_bytes():
    # 1024x2048 at stride 8 is 128x256; 2x2 patches: 4 sequences of 8192 tokens, 4 heads, and
    # scores plus softmax: 2 * 16 maps of 8192² floats = 8 GiB.
    assert bm.attention_map_bytes('xformer-s-sa', (1024, 2048)) == 8 * 2**30
    assert bm.attention_map_bytes('xformer-s-sa', (1024, 1024)) == 2 * 2**30
    assert bm.attention_map_bytes('xformer-s', (1024, 2048)) == 0
    assert bm.attention_map_bytes('mobilevit-s', (1024, 2048)) == 0  # fused SDPA, no map


def test_run_skips_with_a_reason_and_reports_the_rest(tmp_path):
    records = bm.run(['xformer-s', 'xformer-s-sa'], [(64, 64)],
                     repeats=2,
                     warmup=0,
                     max_attn_gib=1e-9,
                     memory=False,
                     log=lambda *_: None)
    by_key = {(r['mode'], r['model']): r for r in records}
    assert set(by_key) == {(m, n) for m in bm.MODES for n in ('xformer-s', 'xformer-s-sa')}
    assert 'attention maps' in by_key['plain', 'xformer-s-sa']['skipped']
    latency = by_key['deploy', 'xformer-s']['latency']
    assert latency['n'] == 2 and latency['min'] <= latency['median'] <= latency['max']
    json.dumps(records)
    bm.plot(records, bm.MODES, tmp_path / 'plot.png', 'test')
    assert (tmp_path / 'plot.png').stat().st_size > 0


@pytest.mark.parametrize('channels_last', [False, True])
def test_train_iteration_times_of_two_detectors(channels_last, monkeypatch):
    from mmxformer.utils import config
    built = []
    build = config.build_model
    monkeypatch.setattr(config, 'build_model', lambda cfg: built.append(build(cfg)) or built[-1])
    configs = [
        osp.join(
            osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))),
            'configs/xformer_yolov3_digits.py'),
        'mmdet::yolo/yolov3_mobilenetv2_8xb24-320-300e_coco.py'
    ]
    times = bm.train_iteration_times(
        configs, batch_size=2, image_size=64, repeats=2, warmup=0, channels_last=channels_last)
    assert list(times) == configs
    assert all(len(t) == 2 and min(t) > 0 for t in times.values())
    assert len(built) == 2
    for model in built:  # every dense 3x3 conv weight in the layout asked for (a depthwise one,
        # with one input channel, is contiguous in both)
        weights = [
            p for p in model.parameters() if p.dim() == 4 and p.shape[1] > 1 and p.shape[-1] == 3
        ]
        assert weights and all(
            w.is_contiguous(memory_format=torch.channels_last) == channels_last for w in weights)


@pytest.mark.parametrize('runtime', ['onnxruntime', 'executorch'])
def test_run_in_another_runtime_in_fp32_and_int8(runtime, monkeypatch):
    if runtime == 'executorch':
        pytest.importorskip(
            'executorch.exir', reason='ExecuTorch is not installed '
            "(pip install -e '.[deploy]')")
    from mmxformer.models import XFormer
    monkeypatch.setitem(bm.MODELS, 'xformer-s', lambda: XFormer(TINY_ARCH))  # fast to export
    records = bm.run(['xformer-s'], [(64, 64)],
                     modes=bm.PRECISIONS,
                     repeats=2,
                     warmup=1,
                     runtime=runtime,
                     log=lambda *_: None)
    assert [(r['mode'], r['runtime']) for r in records] == [('fp32', runtime), ('int8', runtime)]
    assert all(r['latency']['n'] == 2 and r['latency']['min'] > 0 for r in records)
    assert all('memory_mib' not in r for r in records)  # measured for torch only
    json.dumps(records)


def test_run_refuses_modes_of_another_runtime():
    with pytest.raises(ValueError, match='modes .*fp32'):
        bm.run(['xformer-s'], [(64, 64)], modes=('plain', ), runtime='executorch')
    with pytest.raises(ValueError, match='Unknown runtime'):
        bm.modes_of('tflite')


@pytest.mark.parametrize('runtime', ['onnxruntime', 'executorch'])
def test_the_timed_program_computes_the_backbone(runtime, monkeypatch):
    if runtime == 'executorch':
        pytest.importorskip('executorch.exir', reason='ExecuTorch is not installed')
    from mmxformer.models import XFormer
    monkeypatch.setitem(bm.MODELS, 'xformer-s', lambda: XFormer(TINY_ARCH, out_indices=(3, 4)))
    x = torch.rand(1, 3, 64, 64)
    torch.manual_seed(1)
    got = bm.build_runtime_run('xformer-s', runtime, 'fp32', x)()
    torch.manual_seed(1)  # the same initial weights
    with torch.no_grad():
        want = bm.build('xformer-s', 'plain')(x)
    assert len(got) == len(want) == 2  # every output of the backbone
    for g, w in zip(got, want):
        torch.testing.assert_close(torch.as_tensor(g), w, rtol=0, atol=1e-4)


def test_onnxruntime_sessions_block_instead_of_spinning(tmp_path):
    """Every model's session in a round has its own threads; spinning, they would take the cores
    from the model that runs next."""
    pytest.importorskip('onnxruntime', reason='onnxruntime is not installed')
    from mmxformer.deployment.export.onnx import trace_to_onnx
    path = tmp_path / 'conv.onnx'
    trace_to_onnx(torch.nn.Conv2d(3, 8, 3).eval(), torch.rand(1, 3, 16, 16), str(path))
    options = bm.onnxruntime_session(path.read_bytes(), threads=2).get_session_options()
    assert options.intra_op_num_threads == 2
    assert options.get_session_config_entry('session.intra_op.allow_spinning') == '0'
