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
