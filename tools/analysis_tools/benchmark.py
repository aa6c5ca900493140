"""Latency and peak memory of XFormer-S next to its self-attention variant, its attention-free
skeleton, MobileViT-S and MobileNetV2, batch 1, measured side by side in one run.

    python tools/analysis_tools/benchmark.py [--sizes 256 512 768 1024 1024x2048]
                              [--models NAME ...]
                              [--modes plain deploy] [--repeats 10] [--warmup 2]
                              [--device cpu|cuda] [--amp bf16] [--threads N] [--no-memory]
                              [--keep-freed-memory]
                              [--max-attn-gib 4] [--out-dir work_dirs/benchmark]
                              [--runtime torch|onnxruntime|executorch]
    python tools/analysis_tools/benchmark.py --train CONFIG [CONFIG ...] [--batch-size 8]
                              [--repeats 5] [--channels-last]

It prints markdown tables (ratios against XFormer-S) and the goals of docs/benchmark.md, and writes
``benchmark_<device>[_bf16].json`` and a log-log plot ``.png`` into ``--out-dir``. Heavy: on a
shared CPU wrap it in ``flock /tmp/mmxformer-cpu.lock``. With ``--train`` it times one training
iteration of the detectors of mmdet configs instead (the first config's time over each one's).
With ``--runtime onnxruntime`` or ``executorch`` (XNNPACK) every model is exported at every size
and timed in that runtime, in the modes ``fp32`` and ``int8`` (latency only; see
mmxformer/analysis/benchmark.py for how each is exported and quantized).
"""
import argparse
import json
import os
import os.path as osp
import platform
import sys
from datetime import datetime, timezone

import torch

from mmxformer.analysis import benchmark as bm
from mmxformer.analysis.matmul_rate import SHAPE, matmul_rate, work_multiples
from mmxformer.utils.fileio import write_text_atomically

# glibc serves every allocation above 32 MiB (the largest activations of a backbone at 1024² and
# above) with a fresh mmap, which the kernel zero-fills page by page on first touch, and gives it
# back on free: every forward pass pays those page faults again. These settings keep such
# allocations on the heap and freed memory there (the resident set stays at its peak). glibc reads
# them at start-up, so the tool re-executes itself with them; the memory probes inherit them.
KEEP_FREED_MEMORY_ENV = dict(
    MALLOC_MMAP_THRESHOLD_=str(2**30), MALLOC_TRIM_THRESHOLD_=str(2**31 - 1))


def keeps_freed_memory():
    """Whether this process runs with :data:`KEEP_FREED_MEMORY_ENV`."""
    return all(os.environ.get(key) == value for key, value in KEEP_FREED_MEMORY_ENV.items())


def reexec_keeping_freed_memory():
    """Run this command again in a process started with :data:`KEEP_FREED_MEMORY_ENV`."""
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **KEEP_FREED_MEMORY_ENV})


#: The goals of docs/benchmark.md at 1024² (and one at 256²).
GOALS_1024 = [
    # (description, numerator model, denominator model, what, size, comparison, target)
    ('XFA cost: XFormer-S / skeleton latency', bm.BASELINE, 'xformer-s-skeleton', 'latency',
     (1024, 1024), '<=', 1.10),
    ('MobileViT-S / XFormer-S latency', 'mobilevit-s', bm.BASELINE, 'latency', (1024, 1024), '>=',
     2.0),
    ('XFormer-S / MobileViT-S peak memory', bm.BASELINE, 'mobilevit-s', 'memory', (1024, 1024),
     '<=', 0.68),
    ('XFormer-S-SA / XFormer-S latency', 'xformer-s-sa', bm.BASELINE, 'latency', (1024, 1024), '>=',
     2.0),
    ('MobileViT-S / XFormer-S latency', 'mobilevit-s', bm.BASELINE, 'latency', (256, 256), '>=',
     1.3),
]

#: The quantization-friendly variant, whose int8 goals are its own (docs/int8.md).
RELU = 'xformer-s-relu'
#: Sizes at which the int8 speed-up over fp32 is reported (docs/int8.md).
INT8_SPEEDUP_SIZES = [(256, 256), (1024, 1024)]


def check_goals(records, modes, statistic='median'):
    """The goals of the benchmark, per mode: (mode, description, value, comparison, target), the
    values from the ``statistic`` of the latencies ('median', or 'min' as a cross-check)."""

    def ratio(num, den, what, size, num_mode=None, den_mode=None):
        return bm.ratio(
            bm.lookup(records, num_mode, num, size, what, statistic),
            bm.lookup(records, den_mode, den, size, what, statistic))

    rows = []
    if set(bm.PRECISIONS) <= set(modes):  # another runtime: what int8 gains over fp32
        for size in INT8_SPEEDUP_SIZES:
            at = bm.size_name(size)
            rows.append(('both', f'XFormer-S fp32 / int8 latency at {at}',
                         ratio(bm.BASELINE, bm.BASELINE, 'latency', size, 'fp32',
                               'int8'), '>=', 1.5))
            rows.append(('both', f'XFormer-S-ReLU fp32 / int8 latency at {at}',
                         ratio(RELU, RELU, 'latency', size, 'fp32', 'int8'), '>=', 2.5))
            rows.append(('int8', f'XFormer-S / XFormer-S-ReLU int8 latency at {at}',
                         ratio(bm.BASELINE, RELU, 'latency', size, 'int8', 'int8'), '>=', 2.0))
    for mode in modes:
        for text, num, den, what, size, op, target in GOALS_1024:
            rows.append(
                (mode, f'{text} at {bm.size_name(size)}', ratio(num, den, what, size, mode,
                                                                mode), op, target))
        value = bm.ratio(
            bm.lookup(records, mode, bm.BASELINE, (1024, 1024), 'latency', statistic),
            bm.lookup(records, mode, bm.BASELINE, (512, 512), 'latency', statistic))
        rows.append((mode, 'XFormer-S latency 1024x1024 / 512x512', value, '<=', 4.5))
    if set(bm.MODES) <= set(modes):
        speedups = [
            ratio(bm.BASELINE, bm.BASELINE, 'latency', r['size'], 'plain', 'deploy')
            for r in records if r['model'] == bm.BASELINE and r['mode'] == 'deploy'
        ]
        speedups = [s for s in speedups if s is not None]
        rows.append(('both', 'XFormer-S plain / deploy latency, smallest over the sizes',
                     min(speedups) if speedups else None, '>=', 1.3))
    return rows


def goal_met(value, op, target):
    if value is None:
        return None
    return value <= target if op == '<=' else value >= target


def format_goals(rows, rows_min=None):
    """Markdown table of :func:`check_goals`' rows, met or not by the medians; with ``rows_min``
    (the same from the minima) a column of those too."""
    lines = ['| mode | goal | medians | minima | target | met |', '|---|---|---|---|---|---|']
    for (mode, text, value, op, target), row_min in zip(rows, rows_min or [None] * len(rows)):
        met = goal_met(value, op, target)
        lines.append(f'| {mode} | {text} | {bm.format_value(value, "")} | '
                     f'{bm.format_value(row_min and row_min[2], "")} | {op} {target:g} | '
                     f'{ {True: "yes", False: "NO", None: "not measured"}[met]} |')
    return '\n'.join(lines)


def format_work(rates, work):
    """Markdown: the matrix-product rate of each precision, then each model's latency as a
    multiple of its multiply-adds at that rate."""
    shape = ' x '.join(map(str, SHAPE))
    lines = [
        f'### The matrix-product limit ({shape} linear layer, this runtime)\n',
        '| precision | G multiply-adds / s |', '|---|---|'
    ]
    lines += [f'| {mode} | {rate:.1f} |' for mode, rate in rates.items()]
    lines += [
        '', '| size | model | precision | G multiply-adds | their time at the rate, ms | '
        'latency / that time |', '|---|---|---|---|---|---|'
    ]
    lines += [
        f'| {bm.size_name(row["size"])} | {row["model"]} | {row["mode"]} | {row["macs"] / 1e9:.2f} '
        f'| {row["work_ms"]:.1f} | {row["multiple"]:.2f}x |' for row in work
    ]
    return '\n'.join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--sizes',
        nargs='+',
        default=['256', '512', '768', '1024', '1024x2048'],
        help='input sizes: N for NxN or HxW (default 256 512 768 1024 1024x2048)')
    parser.add_argument(
        '--models',
        nargs='+',
        default=list(bm.MODELS),
        choices=list(bm.MODELS),
        help='models to compare (default: all)')
    parser.add_argument(
        '--runtime',
        default='torch',
        choices=bm.RUNTIMES,
        help='torch (default), or the model exported to onnxruntime or to '
        'ExecuTorch (XNNPACK), timed there in fp32 and int8')
    parser.add_argument(
        '--modes',
        nargs='+',
        choices=bm.MODES + bm.PRECISIONS,
        help='torch: plain (eval forward under no_grad), deploy (BN folded, '
        'channels-last, inference_mode); onnxruntime, executorch: fp32, int8 '
        '(default: both of the runtime\'s)')
    parser.add_argument('--repeats', type=int, default=10, help='timed rounds (default 10)')
    parser.add_argument('--warmup', type=int, default=2, help='untimed runs first (default 2)')
    parser.add_argument('--device', default='cpu', help='cpu or cuda[:N] (default cpu)')
    parser.add_argument('--amp', choices=['bf16'], help='run under bfloat16 autocast')
    parser.add_argument('--threads', type=int, help='torch threads (default: torch\'s own)')
    parser.add_argument('--no-memory', action='store_true', help='time only')
    parser.add_argument(
        '--keep-freed-memory',
        action='store_true',
        help='glibc: reuse freed memory instead of mmapping large activations '
        'afresh each pass (glibc MALLOC_MMAP_THRESHOLD_), for all models')
    parser.add_argument(
        '--max-attn-gib',
        type=float,
        default=4.0,
        help='skip a model whose N×N attention maps of one layer would take more '
        'GiB (default 4)')
    parser.add_argument('--out-dir', default='work_dirs/benchmark', help='where JSON and PNG go')
    parser.add_argument(
        '--train',
        nargs='+',
        metavar='CONFIG',
        help='time training iterations of these mmdet configs instead')
    parser.add_argument('--batch-size', type=int, default=8, help='with --train (default 8)')
    parser.add_argument('--image-size', type=int, default=320, help='with --train (default 320)')
    parser.add_argument(
        '--channels-last',
        action='store_true',
        help='with --train: every model in channels-last (default: NCHW); see '
        'docs/benchmark.md before training that way')
    args = parser.parse_args(argv)
    runtime_modes = bm.modes_of(args.runtime)
    args.modes = args.modes or list(runtime_modes)
    if not set(args.modes) <= set(runtime_modes):
        parser.error(f'--runtime {args.runtime} is measured in the modes {list(runtime_modes)}, '
                     f'not {args.modes}')
    if args.runtime != 'torch' and (args.device != 'cpu' or args.amp):
        parser.error(f'--runtime {args.runtime} runs on the CPU in fp32/int8: drop --device '
                     'and --amp')
    if args.repeats < 1 or args.warmup < 0:
        parser.error('--repeats must be at least 1 and --warmup at least 0')
    try:
        args.sizes = [bm.parse_size(size) for size in args.sizes]
    except ValueError as error:
        parser.error(str(error))
    if bm.BASELINE not in args.models:
        parser.error(f'--models must include {bm.BASELINE}: the ratios are against it')
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        parser.error('--device cuda, but CUDA is not available here')
    return args


def environment(args):
    device = (
        torch.cuda.get_device_name(args.device) if args.device.startswith('cuda') else _cpu_name())
    return dict(
        device=device,
        device_type=args.device,
        torch=torch.__version__,
        runtime=args.runtime,
        runtime_version=runtime_version(args.runtime),
        threads=torch.get_num_threads(),
        amp=args.amp or 'fp32',
        keep_freed_memory=args.keep_freed_memory,
        python=sys.version.split()[0],
        date=datetime.now(timezone.utc).isoformat(timespec='seconds'))


def runtime_version(runtime):
    if runtime == 'torch':
        return torch.__version__
    from importlib.metadata import version
    return version(runtime)


#: The CPU extensions that decide what int8 gains (int8 dot products, vector width), widest first.
ISA_FLAGS = ('amx_int8', 'avx512_vnni', 'avx_vnni', 'avx512f', 'avx2')


def _cpu_name():
    try:
        with open('/proc/cpuinfo') as f:
            lines = f.read().splitlines()
        name = next(line.split(':', 1)[1].strip() for line in lines if 'model name' in line)
        flags = next(line.split(':', 1)[1].split() for line in lines if line.startswith('flags'))
    except (OSError, StopIteration):
        return f'{platform.processor() or "unknown CPU"}, {os.cpu_count()} cores'
    isa = ' '.join(flag for flag in ISA_FLAGS if flag in flags) or 'no avx2'
    return f'{name}, {os.cpu_count()} cores ({isa})'


def busy_warning():
    """The 1-minute load average, with a warning when other processes compete for the CPU."""
    load = os.getloadavg()[0]
    if load > 0.5 * os.cpu_count():
        print(f'warning: load average {load:.1f} on {os.cpu_count()} cores: other processes are '
              'running, latencies will be noisy (see the IQR and min-max columns)')
    return load


def main_train(args):
    times = bm.train_iteration_times(args.train, args.batch_size, args.image_size, args.repeats,
                                     args.warmup, args.channels_last)
    summaries = {path: bm.summarize(t) for path, t in times.items()}
    reference = summaries[args.train[0]]['median']
    layout = 'channels-last' if args.channels_last else 'NCHW'
    print(f'One training iteration, batch {args.batch_size} at {args.image_size}², {layout}, '
          f'{torch.get_num_threads()} threads\n')
    print('| config | median s | IQR s | first / this |\n|---|---|---|---|')
    for path, s in summaries.items():
        print(f'| {path} | {s["median"] / 1e3:.2f} | {s["q1"] / 1e3:.2f}-{s["q3"] / 1e3:.2f} | '
              f'{reference / s["median"]:.2f}x |')


def main(argv=None):
    args = parse_args(argv)
    if args.keep_freed_memory and not keeps_freed_memory():
        reexec_keeping_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.train:
        return main_train(args)
    env = environment(args)
    memory = bm.memory_method(args.device) if args.runtime == 'torch' else 'not measured'
    print(f'{env["device"]}; {args.runtime} {env["runtime_version"]}, torch {env["torch"]}, '
          f'{env["threads"]} threads, {env["amp"]}, batch 1, '
          f'keep_freed_memory={args.keep_freed_memory}\nmemory: {memory}')
    load = busy_warning()
    records = bm.run(
        args.models,
        args.sizes,
        args.modes,
        args.repeats,
        args.warmup,
        args.device,
        args.amp,
        args.max_attn_gib,
        not args.no_memory,
        args.threads,
        runtime=args.runtime)
    rates = work = None
    if args.runtime != 'torch':  # the matrix-product limit of each precision (matmul_rate.py)
        rates = {mode: matmul_rate(args.runtime, mode, args.threads) for mode in args.modes}
        work = work_multiples(records, rates)
    env['load_average'] = [load, busy_warning()]
    goals = check_goals(records, args.modes)
    goals_min = check_goals(records, args.modes, 'min')
    print(bm.format_tables(records, args.modes))
    if rates:
        print('\n' + format_work(rates, work))
    print('\n' + format_goals(goals, goals_min))

    os.makedirs(args.out_dir, exist_ok=True)
    runtime = '' if args.runtime == 'torch' else f'_{args.runtime}'
    stem = osp.join(
        args.out_dir, f'benchmark_{args.device.split(":")[0]}{runtime}'
        f'{"_bf16" if args.amp else ""}{"_keep" if args.keep_freed_memory else ""}')
    result = dict(
        environment=env,
        memory_method=bm.memory_method(args.device),
        repeats=args.repeats,
        warmup=args.warmup,
        records=records,
        matmul_rate_gmacs=rates,
        work_limit=work,
        goals=[
            dict(
                mode=m,
                goal=t,
                value=v,
                value_from_minima=row_min[2],
                target=f'{op} {target}',
                met=goal_met(v, op, target))
            for (m, t, v, op, target), row_min in zip(goals, goals_min)
        ])
    write_text_atomically(f'{stem}.json', json.dumps(result, indent=1))
    bm.plot(
        records, args.modes, f'{stem}.png',
        f'{env["device"]}, {args.runtime} {env["runtime_version"]}, {env["threads"]} threads, '
        f'{env["amp"]}, '
        f'batch 1{", keep_freed_memory" if args.keep_freed_memory else ""}')
    print(f'\nwrote {stem}.json and {stem}.png')


if __name__ == '__main__':
    main()
