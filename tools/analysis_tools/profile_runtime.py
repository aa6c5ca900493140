"""Where the time of a backbone's program goes in ExecuTorch (XNNPACK) or onnxruntime, fp32
beside int8, from the runtime's own profiler.

    python tools/analysis_tools/profile_runtime.py [--runtime executorch|onnxruntime]
        [--models xformer-s] [--sizes 256 1024] [--runs 10] [--top 12] [--threads N]
        [--out FILE.json]

Each model of mmxformer/analysis/benchmark.py (whole backbone, batch 1, random weights) is exported
at each size as the benchmark exports it for that runtime (ExecuTorch: to_runtime_form, int8 by PT2E
with the XNNPACK quantizer; onnxruntime: the TorchScript export, int8 by QDQ static quantization of
its optimized graph), run --runs times with the runtime's profiler on (ExecuTorch's ETDump;
onnxruntime's session profiling), and the milliseconds of each kind of operator are printed per run
(medians), fp32 beside int8, the largest --top first. ExecuTorch names XNNPACK's operators
(``Convolution (NHWC, QS8) IGEMM``, ``Sigmoid (NC, F32)``, ...; ops left to the portable kernels as
``portable: <op>``); onnxruntime its operator types (``QLinearConv``, ``DequantizeLinear``, ...).
Heavy: on a shared CPU wrap it in ``flock /tmp/mmxformer-cpu.lock``.
"""
import argparse
import json

import torch

from mmxformer.analysis import benchmark as bm
from mmxformer.analysis.executorch_profile import profile_program
from mmxformer.analysis.onnxruntime_profile import profile_session_runs
from mmxformer.utils.fileio import write_text_atomically


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--runtime', default='executorch', choices=['executorch', 'onnxruntime'])
    parser.add_argument('--models', nargs='+', default=[bm.BASELINE], choices=list(bm.MODELS))
    parser.add_argument(
        '--sizes',
        nargs='+',
        type=bm.parse_size,
        default=[(256, 256)],
        metavar='N|HxW',
        help='input sizes (default 256)')
    parser.add_argument('--runs', type=int, default=10, help='profiled runs (default 10)')
    parser.add_argument(
        '--top',
        type=int,
        default=12,
        help='the kinds of operator printed, the slowest first (default 12)')
    parser.add_argument(
        '--threads', type=int, help='onnxruntime: intra-op threads (default: all cores)')
    parser.add_argument('--out', help='write every kind of every profile to this JSON file')
    args = parser.parse_args(argv)
    if args.runs < 1 or args.top < 1:
        parser.error('--runs and --top must be at least 1')
    return args


#: The runtimes: (title, what the table calls an operator, the total's event).
RUNTIMES = {
    'executorch':
    ('ExecuTorch (XNNPACK)', 'operator (XNNPACK, or portable kernel)', 'Method::execute'),
    'onnxruntime': ('onnxruntime (CPU)', 'operator type (onnxruntime)', 'model_run'),
}


def profile(runtime, name, precision, x, runs, threads=None):
    """The profile of model ``name`` in ``precision`` on ``x`` in ``runtime``."""
    if runtime == 'onnxruntime':
        return profile_session_runs(bm.onnx_model(name, precision, x), x, runs, threads)
    return profile_program(bm.executorch_program(name, precision, x), x, runs)


def format_profiles(fp32, int8, top, runtime='executorch'):
    """Markdown table: the ``top`` slowest kinds of operator (over both), ms in fp32 and in
    int8, and the whole run."""
    kinds = sorted(
        set(fp32['kinds']) | set(int8['kinds']),
        key=lambda k: -max(fp32['kinds'].get(k, 0), int8['kinds'].get(k, 0)))
    _, operator, total = RUNTIMES[runtime]
    lines = [f'| {operator} | fp32 ms | int8 ms |', '|---|---|---|']
    for kind in kinds[:top]:
        cells = [f"{p['kinds'][kind]:.2f}" if kind in p['kinds'] else '' for p in (fp32, int8)]
        lines.append(f'| {kind} | {cells[0]} | {cells[1]} |')
    rest = [
        sum(ms for kind, ms in p['kinds'].items() if kind not in kinds[:top]) for p in (fp32, int8)
    ]
    lines.append(f'| the other {max(len(kinds) - top, 0)} kinds | {rest[0]:.2f} | '
                 f'{rest[1]:.2f} |')
    lines.append(f"| **{total}** | **{fp32['total_ms']:.2f}** | "
                 f"**{int8['total_ms']:.2f}** |")
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    results = []
    for name in args.models:
        for size in args.sizes:
            x = torch.rand(1, 3, *size)
            profiles = {
                precision: profile(args.runtime, name, precision, x, args.runs, args.threads)
                for precision in bm.PRECISIONS
            }
            print(f'\n{name} at {bm.size_name(size)}, {RUNTIMES[args.runtime][0]}, '
                  f'{args.runs} runs, medians')
            print(format_profiles(profiles['fp32'], profiles['int8'], args.top, args.runtime))
            results.append(
                dict(runtime=args.runtime, model=name, size=list(size), runs=args.runs, **profiles))
    if args.out:
        write_text_atomically(args.out, json.dumps(results, indent=1) + '\n')
        print(f'\nwrote {args.out}')


if __name__ == '__main__':
    main()
