"""tools/analysis_tools/benchmark.py: the goals of docs/benchmark.md, glibc's allocator setting."""
import pytest

from mmxformer.analysis import benchmark as bm


@pytest.fixture(scope='module')
def tool(load_tool):
    return load_tool('analysis_tools/benchmark.py')


def test_goals_are_ratios_of_the_records(tool):

    def record(mode, model, size, median, memory):
        return dict(
            mode=mode,
            model=model,
            size=list(size),
            memory_mib=memory,
            latency=dict(median=median, q1=median, q3=median, min=median, max=median, n=1))

    records = [
        record('plain', 'xformer-s', (1024, 1024), 100, 50),
        record('plain', 'xformer-s', (512, 512), 20, 15),
        record('plain', 'xformer-s-skeleton', (1024, 1024), 95, 48),
        record('plain', 'mobilevit-s', (1024, 1024), 250, 100),
        record('deploy', 'xformer-s', (1024, 1024), 50, 40),
    ]
    goals = {
        (mode, text): (value, tool.goal_met(value, op, target))
        for mode, text, value, op, target in tool.check_goals(records, bm.MODES)
    }
    assert goals['plain',
                 'XFA cost: XFormer-S / skeleton latency at 1024x1024'] == (pytest.approx(100 / 95),
                                                                            True)
    assert goals['plain', 'MobileViT-S / XFormer-S latency at 1024x1024'] == (2.5, True)
    assert goals['plain', 'XFormer-S / MobileViT-S peak memory at 1024x1024'] == (0.5, True)
    assert goals['plain', 'XFormer-S latency 1024x1024 / 512x512'] == (5.0, False)
    assert goals['plain', 'MobileViT-S / XFormer-S latency at 256x256'] == (None, None)
    assert goals['both', 'XFormer-S plain / deploy latency, smallest over the sizes'] == (2.0, True)


@pytest.mark.parametrize('keep_memory', [False, True])
def test_cpu_peak_memory_counts_the_activations(tool, keep_memory, monkeypatch):
    """The memory probe runs in a fresh process, which inherits glibc's settings."""
    for key, value in tool.KEEP_FREED_MEMORY_ENV.items():
        if keep_memory:
            monkeypatch.setenv(key, value)
        else:
            monkeypatch.delenv(key, raising=False)
    assert tool.keeps_freed_memory() == keep_memory
    # At 256x256 the stage-1 expansion alone is 64 channels x 128² floats = 4 MiB.
    assert bm.measure_peak_memory('xformer-s', 'plain', (256, 256), 'cpu', threads=1) > 4


def test_goals_from_the_minima(tool):

    def record(model, median, minimum):
        return dict(
            mode='deploy',
            model=model,
            size=[1024, 1024],
            memory_mib=1,
            latency=dict(median=median, q1=median, q3=median, min=minimum, max=median, n=3))

    records = [record('xformer-s', 100, 60), record('mobilevit-s', 150, 150)]
    by_median, by_min = (
        tool.check_goals(records, ['deploy'], statistic)[1][2] for statistic in ('median', 'min'))
    assert (by_median, by_min) == (1.5, 2.5)


def test_the_int8_goals_of_the_relu_variant(tool):

    def record(mode, model, median):
        return dict(
            mode=mode,
            model=model,
            size=[256, 256],
            latency=dict(median=median, q1=median, q3=median, min=median, max=median, n=1))

    records = [
        record('fp32', 'xformer-s', 20),
        record('int8', 'xformer-s', 16),
        record('fp32', 'xformer-s-relu', 18),
        record('int8', 'xformer-s-relu', 6)
    ]
    goals = {text: value for _, text, value, _, _ in tool.check_goals(records, bm.PRECISIONS)}
    assert goals['XFormer-S fp32 / int8 latency at 256x256'] == 1.25
    assert goals['XFormer-S-ReLU fp32 / int8 latency at 256x256'] == 3.0
    assert goals['XFormer-S / XFormer-S-ReLU int8 latency at 256x256'] == pytest.approx(16 / 6)
    assert goals['XFormer-S-ReLU fp32 / int8 latency at 1024x1024'] is None  # not measured


def test_executorch_run_prints_the_matrix_product_limit(tool, tmp_path, monkeypatch, capsys):
    """One run in ExecuTorch, fp32 and int8, with the tiny backbone and a small product: the
    latency tables, the rate of each precision with every model's multiple of its work, the
    goals, and the JSON record of all of it."""
    pytest.importorskip('executorch.exir', reason='ExecuTorch is not installed')
    import json

    from conftest import TINY_ARCH

    from mmxformer.analysis import matmul_rate
    from mmxformer.models import XFormer
    monkeypatch.setitem(bm.MODELS, 'xformer-s', lambda: XFormer(TINY_ARCH))
    monkeypatch.setattr(matmul_rate, 'SHAPE', (64, 32, 32))
    rates = []

    def small_rate(runtime, precision, threads=None):
        rates.append((runtime, precision))
        return matmul_rate.matmul_rate(runtime, precision, threads, repeats=2, shape=(64, 32, 32))

    monkeypatch.setattr(tool, 'matmul_rate', small_rate)
    tool.main([
        '--runtime', 'executorch', '--models', 'xformer-s', '--sizes', '32', '--repeats', '1',
        '--warmup', '0', '--out-dir',
        str(tmp_path)
    ])
    printed = capsys.readouterr().out
    assert rates == [('executorch', 'fp32'), ('executorch', 'int8')]
    assert '### The matrix-product limit' in printed
    assert '| 32x32 | xformer-s | int8 |' in printed
    assert '| both | XFormer-S fp32 / int8 latency at 256x256 | - |' in printed  # not measured
    result = json.loads((tmp_path / 'benchmark_cpu_executorch.json').read_text())
    assert set(result['matmul_rate_gmacs']) == {'fp32', 'int8'}
    assert all(row['multiple'] > 0 and row['macs'] > 0 for row in result['work_limit'])
    assert len(result['work_limit']) == 2
