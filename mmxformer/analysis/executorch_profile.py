"""Where an ExecuTorch program's time goes, from ExecuTorch's own event tracer (ETDump).

The program is loaded with ``enable_etdump=True`` and run ``runs`` times; ExecuTorch's
``Inspector`` (``executorch.devtools``) reads the trace, in which XNNPACK reports each of its
operators (``Convolution (NHWC, QS8) IGEMM #12``, ``Sigmoid (NC, F32) #3``, ...) and the
portable kernels each op they run. The events are summed per kind (the name without its
``#N``) within each run, and the median over the runs is reported, with the median of the
whole ``Method::execute``.
"""
import os.path as osp
import re
import statistics
import tempfile

#: Events of the trace that are not operators: the method's own, and the calls into a delegate
#: or a portable kernel, which hold the operators reported one by one.
NOT_OPERATORS = ('Method::execute', 'Method::init', 'Program::load_method', 'DELEGATE_CALL',
                 'OPERATOR_CALL')


def operator_kind(name):
    """``'Convolution (NHWC, F32) IGEMM #12'`` -> ``'Convolution (NHWC, F32) IGEMM'``;
    ``'native_call_native_layer_norm.out'`` -> ``'portable: native_layer_norm'``."""
    name = re.sub(r' #\d+$', '', name)
    if name.startswith('native_call_'):
        return 'portable: ' + name[len('native_call_'):].removesuffix('.out')
    return name


def profile_program(program, x, runs=10):
    """Milliseconds per operator kind of an ExecuTorch program on ``x``.

    Args:
        program (bytes): The program.
        x (torch.Tensor): Its input.
        runs (int): How many runs the medians are taken over (after one warm-up run, which is
            not counted).

    Returns:
        dict: ``total_ms`` (median of ``Method::execute``), ``kinds`` (kind -> median ms of
        all its operators in a run, largest first) and ``operators`` (kind -> how many
        operators of that kind the program runs).
    """
    from executorch.devtools import Inspector
    from executorch.runtime import Runtime
    if runs < 1:
        raise ValueError(f'Profile at least one run, not {runs}')
    # no debug buffer: it would log every intermediate output, and abort when it fills up
    loaded = Runtime.get().load_program(program, enable_etdump=True, debug_buffer_size=0)
    method = loaded.load_method('forward')
    for _ in range(runs + 1):
        method.execute([x.contiguous()])
    with tempfile.TemporaryDirectory() as tmp:
        etdump = osp.join(tmp, 'trace.etdp')
        loaded.write_etdump_result_to_file(etdump, osp.join(tmp, 'debug.bin'))
        inspector = Inspector(etdump_path=etdump)
    per_run = {}
    operators = {}
    total = []
    for block in inspector.event_blocks:
        for event in block.events:
            if event.perf_data is None:
                continue
            times = list(event.perf_data.raw)[-runs:]  # the warm-up run first
            if event.name == 'Method::execute':
                total = times
            elif event.name not in NOT_OPERATORS:
                kind = operator_kind(event.name)
                operators[kind] = operators.get(kind, 0) + 1
                sums = per_run.setdefault(kind, [0.] * len(times))
                for i, ms in enumerate(times):
                    sums[i] += ms
    kinds = {kind: statistics.median(times) for kind, times in per_run.items()}
    return dict(
        total_ms=statistics.median(total) if total else None,
        kinds=dict(sorted(kinds.items(), key=lambda item: -item[1])),
        operators=operators)
