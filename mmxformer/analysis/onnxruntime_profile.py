"""Where an onnxruntime session's time goes, from onnxruntime's own profiler.

The session is created with profiling on and run ``runs`` + 1 times; the profile (Chrome trace
JSON) has one ``model_run`` event per run and one ``<node>_kernel_time`` event per node run,
with the node's operator type (``Conv``, ``QLinearConv``, ``DequantizeLinear``, ``Sigmoid``,
...). The kernels are summed per operator type within each run (the first, a warm-up, dropped),
and the median over the runs is reported, with the median of the whole ``model_run``.
"""
import bisect
import json
import os
import statistics
import tempfile

from .benchmark import onnxruntime_session


def profile_session_runs(model, x, runs=10, threads=None):
    """Milliseconds per operator type of an ONNX model in onnxruntime's CPU provider on ``x``.

    Args:
        model (bytes): The ONNX model (input ``input``).
        x (torch.Tensor): Its input.
        runs (int): How many runs the medians are taken over (after one warm-up run, which is
            not counted).
        threads (int, optional): Intra-op threads. Defaults to all cores.

    Returns:
        dict: ``total_ms`` (median of ``model_run``) and ``kinds`` (operator type -> median ms
        of all its kernels in a run, largest first), as
        :func:`~mmxformer.analysis.executorch_profile.profile_program`.
    """
    if runs < 1:
        raise ValueError(f'Profile at least one run, not {runs}')
    with tempfile.TemporaryDirectory() as tmp:
        session = onnxruntime_session(model, threads, profile_prefix=os.path.join(tmp, 'ort'))
        feed = {'input': x.numpy()}
        for _ in range(runs + 1):
            session.run(None, feed)
        with open(session.end_profiling()) as f:
            events = json.load(f)
    windows = sorted((e['ts'], e['ts'] + e['dur']) for e in events if e['name'] == 'model_run')
    windows = windows[1:]  # the warm-up run
    starts = [start for start, _ in windows]
    per_run = {}
    for event in events:
        if event.get('cat') != 'Node' or not event['name'].endswith('_kernel_time'):
            continue
        run = bisect.bisect_right(starts, event['ts']) - 1
        if run < 0 or event['ts'] > windows[run][1]:
            continue
        sums = per_run.setdefault(event['args']['op_name'], [0.] * len(windows))
        sums[run] += event['dur'] / 1000
    kinds = {kind: statistics.median(times) for kind, times in per_run.items()}
    return dict(
        total_ms=statistics.median((end - start) / 1000 for start, end in windows),
        kinds=dict(sorted(kinds.items(), key=lambda item: -item[1])))
