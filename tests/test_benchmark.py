import json
import os.path as osp

import pytest
import torch

from mmxformer import benchmark as bm


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
    records = bm.run(['xformer-s', 'xformer-s-sa'], [(64, 64)], repeats=2, warmup=0,
                     max_attn_gib=1e-9, memory=False, log=lambda *_: None)
    by_key = {(r['mode'], r['model']): r for r in records}
    assert set(by_key) == {(m, n) for m in bm.MODES for n in ('xformer-s', 'xformer-s-sa')}
    assert 'attention maps' in by_key['plain', 'xformer-s-sa']['skipped']
    latency = by_key['deploy', 'xformer-s']['latency']
    assert latency['n'] == 2 and latency['min'] <= latency['median'] <= latency['max']
    json.dumps(records)
    bm.plot(records, bm.MODES, tmp_path / 'plot.png', 'test')
    assert (tmp_path / 'plot.png').stat().st_size > 0


def test_goals_are_ratios_of_the_records():
    def record(mode, model, size, median, memory):
        return dict(mode=mode, model=model, size=list(size), memory_mib=memory,
                    latency=dict(median=median, q1=median, q3=median, min=median, max=median, n=1))

    records = [
        record('plain', 'xformer-s', (1024, 1024), 100, 50),
        record('plain', 'xformer-s', (512, 512), 20, 15),
        record('plain', 'xformer-s-skeleton', (1024, 1024), 95, 48),
        record('plain', 'mobilevit-s', (1024, 1024), 250, 100),
        record('deploy', 'xformer-s', (1024, 1024), 50, 40),
    ]
    goals = {(mode, text): (value, bm.goal_met(value, op, target))
             for mode, text, value, op, target in bm.check_goals(records, bm.MODES)}
    assert goals['plain', 'XFA cost: XFormer-S / skeleton latency at 1024x1024'] == (
        pytest.approx(100 / 95), True)
    assert goals['plain', 'MobileViT-S / XFormer-S latency at 1024x1024'] == (2.5, True)
    assert goals['plain', 'XFormer-S / MobileViT-S peak memory at 1024x1024'] == (0.5, True)
    assert goals['plain', 'XFormer-S latency 1024x1024 / 512x512'] == (5.0, False)
    assert goals['plain', 'MobileViT-S / XFormer-S latency at 256x256'] == (None, None)
    assert goals['both', 'XFormer-S plain / deploy latency, smallest over the sizes'] == (2.0, True)


@pytest.mark.parametrize('keep_memory', [False, True])
def test_cpu_peak_memory_counts_the_activations(keep_memory):
    # At 256x256 the stage-1 expansion alone is 64 channels x 128² floats = 4 MiB.
    assert bm.measure_peak_memory(
        'xformer-s', 'plain', (256, 256), 'cpu', threads=1, keep_memory=keep_memory) > 4


def test_goals_from_the_minima():
    def record(model, median, minimum):
        return dict(mode='deploy', model=model, size=[1024, 1024], memory_mib=1,
                    latency=dict(median=median, q1=median, q3=median, min=minimum, max=median,
                                 n=3))

    records = [record('xformer-s', 100, 60), record('mobilevit-s', 150, 150)]
    by_median, by_min = (bm.check_goals(records, ['deploy'], statistic)[1][2]
                         for statistic in ('median', 'min'))
    assert (by_median, by_min) == (1.5, 2.5)


@pytest.mark.parametrize('channels_last', [False, True])
def test_train_iteration_times_of_two_detectors(channels_last, monkeypatch):
    from mmxformer import analysis
    built = []
    build = analysis.build_model
    monkeypatch.setattr(analysis, 'build_model', lambda cfg: built.append(build(cfg)) or built[-1])
    configs = [osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                        'configs/xformer_yolov3_digits.py'),
               'mmdet::yolo/yolov3_mobilenetv2_8xb24-320-300e_coco.py']
    times = bm.train_iteration_times(configs, batch_size=2, image_size=64, repeats=2, warmup=0,
                                     channels_last=channels_last)
    assert list(times) == configs
    assert all(len(t) == 2 and min(t) > 0 for t in times.values())
    assert len(built) == 2
    for model in built:  # every dense 3x3 conv weight in the layout asked for (a depthwise one,
        # with one input channel, is contiguous in both)
        weights = [p for p in model.parameters() if p.dim() == 4 and p.shape[1] > 1
                   and p.shape[-1] == 3]
        assert weights and all(
            w.is_contiguous(memory_format=torch.channels_last) == channels_last for w in weights)
