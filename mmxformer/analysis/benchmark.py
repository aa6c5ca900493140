"""Side-by-side latency and peak memory of backbones, as ``tools/benchmark.py`` measures them.

- Latency: batch 1, every model warmed up, then ``repeats`` rounds in which every model runs once,
  in an order rotated from round to round, so that a noisy machine slows all models alike; the
  median and the spread (quartiles, min, max) of each model's rounds are reported.
- Peak memory on the CPU: each model in a fresh process (spawned), one forward pass at 64x64 to
  load the kernels, then the peak resident set of one forward pass (Linux's VmHWM, reset through
  ``/proc/self/clear_refs``) minus the resident set just before it. On CUDA:
  ``torch.cuda.max_memory_allocated`` minus the memory allocated before the forward pass.
- Modes: ``plain`` is ``model.eval()`` under ``torch.no_grad()``; ``deploy`` is
  :func:`mmxformer.deployment.deploy` (BN folded into the convs, channels-last) under
  ``torch.inference_mode()``, applied to every model alike.
- Runtimes: ``torch`` (the modes above), ``onnxruntime`` and ``executorch`` (XNNPACK), whose
  modes are the precisions ``fp32`` and ``int8``. Each model is exported at each size (static
  shapes) from the plain model, the whole backbone with all its outputs; int8 is calibrated on
  random inputs, which sets the ranges, not the speed. ONNX: the TorchScript exporter, int8 by
  :func:`~mmxformer.deployment.quantize.onnxruntime.quantize_onnx` (the graph optimized, then
  onnxruntime's ``quantize_static``, QDQ), one session of ``threads`` intra-op threads (default:
  the cores) that block rather than spin when idle. ExecuTorch:
  :func:`~mmxformer.models.to_runtime_form` on every model alike, int8 by PT2E with the XNNPACK
  quantizer, XNNPACK's thread pool of ``threads`` threads (default: its own). Peak memory is
  measured for ``torch`` only.
"""
import gc
import os
import re
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from multiprocessing import get_context

import torch

from ..deployment.inference_mode import deploy
from ..models import to_runtime_form
from ..tasks import TensorModel

BASELINE = 'xformer-s'
MODES = ('plain', 'deploy')
RUNTIMES = ('torch', 'onnxruntime', 'executorch')
PRECISIONS = ('fp32', 'int8')
CALIBRATION_INPUTS = 4


def modes_of(runtime):
    """The modes a runtime is measured in: :data:`MODES` for torch, else :data:`PRECISIONS`."""
    if runtime not in RUNTIMES:
        raise ValueError(f'Unknown runtime {runtime!r}; choose from {RUNTIMES}')
    return MODES if runtime == 'torch' else PRECISIONS


def _xformer(attn, **variant):

    def build():
        from ..models import XFormer
        return XFormer('small', attn_cfg=dict(type=attn), **variant)

    return build


def _mobilevit():
    from mmpretrain.models import MobileViT
    return MobileViT('small')  # self-attention through F.scaled_dot_product_attention


def _mobilenetv2():
    from mmpretrain.models import MobileNetV2
    return MobileNetV2(widen_factor=1.0)


# Whole backbones up to their last feature map (XFormer-S and MobileViT-S: a 1x1 conv to 640
# channels; MobileNetV2: to 1280), no classifier.
MODELS = {
    'xformer-s':
    _xformer('CrossFeatureAttention'),
    'xformer-s-sa':
    _xformer('MultiheadSelfAttention'),
    'xformer-s-skeleton':
    _xformer('IdentityMixer'),
    # the quantization-friendly variant, as configs/xformer-s-relu_8xb128_in1k.py builds it
    'xformer-s-relu':
    _xformer(
        'CrossFeatureAttention',
        act_cfg=dict(type='ReLU'),
        transformer_act_cfg=dict(type='ReLU'),
        transformer_norm_cfg=dict(type='TokenBatchNorm')),
    'mobilevit-s':
    _mobilevit,
    'mobilenetv2':
    _mobilenetv2,
}
# Models that build N×N attention maps: (stride of their first transformer stage, patch size,
# heads). MultiheadSelfAttention keeps the scores and their softmax, two maps a head and sequence.
EXPLICIT_ATTENTION = {'xformer-s-sa': (8, 2, 4)}


def parse_size(text):
    """``'512'`` -> (512, 512); ``'1024x2048'`` -> (1024, 2048) (height x width)."""
    match = re.fullmatch(r'(\d+)(?:x(\d+))?', str(text))
    if not match:
        raise ValueError(f'Size {text!r} is neither N nor HxW (e.g. 512 or 1024x2048)')
    height = int(match[1])
    return height, int(match[2] or height)


def size_name(size):
    return f'{size[0]}x{size[1]}'


def attention_map_bytes(name, size, itemsize=4):
    """Bytes of the N×N attention maps that model ``name`` keeps at once in one layer of its
    first (largest) transformer stage for one image of ``size``; 0 if it never builds any."""
    if name not in EXPLICIT_ATTENTION:
        return 0
    stride, patch, heads = EXPLICIT_ATTENTION[name]
    height, width = (-(-side // stride) for side in size)
    tokens = -(-height // patch) * -(-width // patch)
    return 2 * patch * patch * heads * tokens**2 * itemsize


def build(name, mode, device='cpu'):
    """Model ``name`` in ``mode`` ('plain' or 'deploy') on ``device``."""
    if name not in MODELS:
        raise KeyError(f'Unknown model {name!r}; choose from {list(MODELS)}')
    model = MODELS[name]().to(device)
    model.eval()  # not chained: mmpretrain's MobileViT.train() returns None
    return deploy(model) if mode == 'deploy' else model


def inference_context(mode, device, amp=None):
    """``no_grad`` (plain) or ``inference_mode`` (deploy), under bf16 autocast if ``amp``."""
    stack = ExitStack()
    stack.enter_context(torch.inference_mode() if mode == 'deploy' else torch.no_grad())
    if amp == 'bf16':
        stack.enter_context(torch.autocast(torch.device(device).type, dtype=torch.bfloat16))
    return stack


def _sync(device):
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize(device)


def measure_latency(runs, warmup, repeats, device):
    """Seconds of each forward pass of ``runs`` (label -> zero-argument callable), alternating.

    Returns:
        dict: label -> list of ``repeats`` durations in seconds.
    """
    labels = list(runs)
    for label in labels:
        for _ in range(warmup):
            runs[label]()
    times = {label: [] for label in labels}
    for i in range(repeats):
        shift = i % len(labels)
        for label in labels[shift:] + labels[:shift]:
            _sync(device)
            start = time.perf_counter()
            runs[label]()
            _sync(device)
            times[label].append(time.perf_counter() - start)
    return times


def summarize(seconds):
    """Median, quartiles, min and max of durations, and the durations in the order measured, in
    milliseconds."""
    times = [1e3 * s for s in seconds]
    ms = sorted(times)
    q1, _, q3 = statistics.quantiles(ms, n=4) if len(ms) > 1 else ms * 3
    return dict(
        median=statistics.median(ms), q1=q1, q3=q3, min=ms[0], max=ms[-1], n=len(ms), times=times)


def _kib(field):
    with open('/proc/self/status') as f:
        return int(re.search(rf'^{field}:\s+(\d+) kB', f.read(), re.MULTILINE)[1])


def _cpu_peak_probe(name, mode, size, amp, threads):
    """In a fresh process: MiB by which one forward pass raises the peak resident set."""
    if threads:
        torch.set_num_threads(threads)
    model = build(name, mode)
    with inference_context(mode, 'cpu', amp):
        model(torch.rand(1, 3, 64, 64))  # load the kernels and their workspaces
        x = torch.rand(1, 3, *size)
        gc.collect()
        before = _kib('VmRSS')
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')  # reset VmHWM to the current resident set
        model(x)
        return (_kib('VmHWM') - before) / 1024


def measure_peak_memory(name, mode, size, device, amp=None, threads=None):
    """MiB by which one forward pass of model ``name`` on a 1x3x``size`` input raises the peak
    memory (see the module's docstring for the method)."""
    if torch.device(device).type == 'cuda':
        model = build(name, mode, device)
        x = torch.rand(1, 3, *size, device=device)
        with inference_context(mode, device, amp):
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
            model(x)
            torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    if not os.path.exists('/proc/self/clear_refs'):
        raise RuntimeError('CPU peak memory needs Linux (/proc/self/clear_refs)')
    with ProcessPoolExecutor(1, mp_context=get_context('spawn')) as pool:
        return pool.submit(_cpu_peak_probe, name, mode, size, amp, threads).result()


def memory_method(device):
    if torch.device(device).type == 'cuda':
        return ('torch.cuda.max_memory_allocated during one forward pass, minus the memory '
                'allocated before it')
    return ('peak resident set (VmHWM, reset via /proc/self/clear_refs) during one forward pass '
            'in a fresh process, minus the resident set before it (model and input loaded, '
            'kernels warmed up at 64x64)')


def run(names,
        sizes,
        modes=MODES,
        repeats=10,
        warmup=2,
        device='cpu',
        amp=None,
        max_attn_gib=4.0,
        memory=True,
        threads=None,
        log=print,
        runtime='torch'):
    """Measure every model of ``names`` in every mode at every size (the memory probes inherit
    the environment, e.g. glibc's ``MALLOC_*`` settings).

    Args:
        runtime (str): 'torch' (``modes`` from :data:`MODES`), 'onnxruntime' or 'executorch'
            (``modes`` from :data:`PRECISIONS`; CPU, fp32 inputs, no memory probe).

    Returns:
        list[dict]: one record per (mode, model, size) with ``latency`` (see :func:`summarize`),
        ``memory_mib``, or ``skipped`` (the reason); and ``runtime``.
    """
    allowed = modes_of(runtime)
    if not set(modes) <= set(allowed):
        raise ValueError(f'Runtime {runtime} is measured in the modes {allowed}, not {modes}')
    if runtime != 'torch' and (torch.device(device).type != 'cpu' or amp):
        raise ValueError(f'Runtime {runtime} runs on the CPU in fp32 or int8 here; '
                         'use --device cpu without --amp')
    if threads:
        torch.set_num_threads(threads)
    models = ({
        (mode, name): build(name, mode, device)
        for mode in modes
        for name in names
    } if runtime == 'torch' else dict.fromkeys((m, n) for m in modes for n in names))
    records = []
    for size in sizes:
        x = torch.rand(1, 3, *size, device=device)
        runs, skipped = {}, {}
        for (mode, name), model in models.items():
            need = attention_map_bytes(name, size) / 2**30
            if need > max_attn_gib:
                skipped[mode, name] = (
                    f'its N×N attention maps would take {need:.3g} GiB in one layer, more than '
                    f'--max-attn-gib {max_attn_gib:g}')
                continue
            if runtime == 'torch':
                runs[mode,
                     name] = (lambda model=model, mode=mode: _forward(model, x, mode, device, amp))
            else:
                log(f'  exporting {name} to {runtime} ({mode}) at {size_name(size)}')
                runs[mode, name] = build_runtime_run(name, runtime, mode, x, threads)
        log(f'{size_name(size)}: timing {len(runs)} runs x {repeats} rounds '
            f'({len(skipped)} skipped)')
        times = measure_latency(runs, warmup, repeats, device)
        for (mode, name) in models:
            record = dict(mode=mode, model=name, size=list(size), runtime=runtime)
            if (mode, name) in skipped:
                record['skipped'] = skipped[mode, name]
                log(f'  skipped {name} ({mode}) at {size_name(size)}: {record["skipped"]}')
            else:
                record['latency'] = summarize(times[mode, name])
                if memory and runtime == 'torch':
                    record['memory_mib'] = measure_peak_memory(name, mode, size, device, amp,
                                                               threads)
            records.append(record)
    return records


def build_runtime_run(name, runtime, precision, x, threads=None):
    """A zero-argument callable that runs model ``name``, exported to ``runtime`` in
    ``precision`` at the shape of ``x``, on ``x`` (see the module's docstring)."""
    return runtime_run(TensorModel(build(name, 'plain')).eval(), runtime, precision, x, threads)


def runtime_run(model, runtime, precision, x, threads=None):
    """A zero-argument callable that runs ``model`` (in eval mode, tensors out), exported to
    ``runtime`` ('onnxruntime' or 'executorch') in ``precision`` at the shape of ``x``, on
    ``x``."""
    calibration = _calibration(x)
    if runtime == 'onnxruntime':
        return _onnxruntime_run(model, precision, x, calibration, threads)
    return _executorch_run(model, precision, x, calibration, threads)


def _onnxruntime_run(model, precision, x, calibration, threads):
    session = onnxruntime_session(_onnx_model(model, precision, x, calibration), threads)
    feed = {'input': x.numpy()}
    return lambda: session.run(None, feed)


def onnx_model(name, precision, x):
    """The ONNX model, as bytes, of model ``name`` in ``precision`` at the shape of ``x``, as
    the benchmark measures it (see the module's docstring)."""
    model = TensorModel(build(name, 'plain')).eval()
    return _onnx_model(model, precision, x, _calibration(x))


def _onnx_model(model, precision, x, calibration):
    import tempfile

    from ..deployment.export.onnx import trace_to_onnx
    from ..deployment.quantize.onnxruntime import quantize_onnx
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'fp32.onnx')
        trace_to_onnx(model, x, path)
        if precision == 'int8':
            quantize_onnx(path, os.path.join(tmp, 'int8.onnx'), calibration)
            path = os.path.join(tmp, 'int8.onnx')
        with open(path, 'rb') as f:
            return f.read()


def onnxruntime_session(model, threads=None, profile_prefix=None):
    """An onnxruntime CPU session of ``model`` (ONNX bytes) with ``threads`` intra-op threads
    (default: all cores), profiling into ``profile_prefix``*.json if given."""
    import onnxruntime as ort
    ort.set_default_logger_severity(3)  # not a warning per unused initializer of the QDQ graph
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or os.cpu_count()
    # idle threads block instead of spinning: spinning, the threads of the model that ran last
    # take the cores from the next one, which ran 1.5-3x slower in interleaved rounds (XFormer-S's
    # fp32 / int8 read 1.5 where it was 0.9); a model run twice in a row was no faster spinning
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(model, options, providers=['CPUExecutionProvider'])


def executorch_program(name, precision, x):
    """The ExecuTorch (XNNPACK) program, as bytes, of model ``name`` in ``precision`` at the
    shape of ``x``, as the benchmark measures it (see the module's docstring)."""
    model = TensorModel(build(name, 'plain')).eval()
    return _executorch_program(model, precision, x, _calibration(x))


def _calibration(x):
    return [torch.rand_like(x) for _ in range(CALIBRATION_INPUTS)]


def _executorch_program(model, precision, x, calibration):
    from ..deployment.export.executorch import lower_to_xnnpack
    from ..deployment.quantize.pt2e import quantize_for_xnnpack
    exported = torch.export.export(to_runtime_form(model).eval(), (x, ))
    if precision == 'int8':
        quantized = quantize_for_xnnpack(exported.module(), x, calibration)
        exported = torch.export.export(quantized, (x, ))
    return lower_to_xnnpack(exported)[0]


def _executorch_run(model, precision, x, calibration, threads):
    from ..deployment.export.executorch import load_method
    buffer = _executorch_program(model, precision, x, calibration)
    if threads:
        from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
        _unsafe_reset_threadpool(threads)
    method = load_method(buffer)
    return lambda: method.execute([x])


def _forward(model, x, mode, device, amp):
    with inference_context(mode, device, amp):
        return model(x)


def lookup(records, mode, name, size, what, statistic='median'):
    """Latency (ms; its ``statistic``, see :func:`summarize`) or peak memory (MiB) of one
    measurement, None if not measured."""
    for r in records:
        if (r['mode'], r['model'], tuple(r['size'])) == (mode, name, tuple(size)):
            if 'skipped' in r:
                return None
            return r['latency'][statistic] if what == 'latency' else r.get('memory_mib')
    return None


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def format_tables(records, modes):
    """Markdown tables: one per mode, models by size, ratios against XFormer-S."""
    lines = []
    for mode in modes:
        lines += [
            f'\n### {mode}\n', '| size | model | median ms | IQR ms | min-max ms | '
            'latency / XFormer-S | peak MiB | memory / XFormer-S |', '|---' * 8 + '|'
        ]
        for r in (r for r in records if r['mode'] == mode):
            size = tuple(r['size'])
            if 'skipped' in r:
                lines.append(f'| {size_name(size)} | {r["model"]} | skipped: {r["skipped"]} '
                             '| | | | | |')
                continue
            lat, mem = r['latency'], r.get('memory_mib')
            lat_ratio = ratio(lat['median'], lookup(records, mode, BASELINE, size, 'latency'))
            mem_ratio = ratio(mem, lookup(records, mode, BASELINE, size, 'memory'))
            lines.append(f'| {size_name(size)} | {r["model"]} | {lat["median"]:.1f} | '
                         f'{lat["q1"]:.1f}-{lat["q3"]:.1f} | {lat["min"]:.1f}-{lat["max"]:.1f} | '
                         f'{format_value(lat_ratio, "x")} | {format_value(mem, "", ".0f")} | '
                         f'{format_value(mem_ratio, "x")} |')
    return '\n'.join(lines)


def format_value(value, suffix, spec='.2f'):
    return '-' if value is None else f'{value:{spec}}{suffix}'


def plot(records, modes, path, title):
    """Log-log latency and peak memory against the pixel count, one line per model and mode."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    names = list(dict.fromkeys(r['model'] for r in records))
    colors = dict(zip(names, plt.rcParams['axes.prop_cycle'].by_key()['color']))
    for ax, what, unit in zip(axes, ('latency', 'memory'), ('ms', 'MiB')):
        for mode in modes:
            for name in names:
                points = sorted(
                    (r['size'][0] * r['size'][1], lookup(records, mode, name, r['size'], what))
                    for r in records if r['mode'] == mode and r['model'] == name)
                points = [(p, v) for p, v in points if v is not None]
                if points:
                    ax.plot(
                        *zip(*points),
                        marker='o',
                        ms=3,
                        color=colors[name],
                        linestyle='-' if mode == 'plain' else '--',
                        label=f'{name} ({mode})' if len(modes) > 1 else name)
        base = sorted(
            (r['size'][0] * r['size'][1], lookup(records, modes[0], BASELINE, r['size'], what))
            for r in records if r['mode'] == modes[0] and r['model'] == BASELINE)
        base = [(p, v) for p, v in base if v is not None]
        if base:
            (p0, v0), p1 = base[0], base[-1][0]
            ax.plot([p0, p1], [v0, v0 * p1 / p0],
                    color='grey',
                    linestyle=':',
                    lw=1,
                    label='linear in pixels')
        ax.set(xscale='log', yscale='log', xlabel='pixels (H x W)', ylabel=f'{what} ({unit})')
        ax.grid(True, which='both', alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(f'{path}.tmp', dpi=80, format='png')
    plt.close(fig)
    os.replace(f'{path}.tmp', path)


def train_iteration_times(configs,
                          batch_size=8,
                          image_size=320,
                          repeats=5,
                          warmup=1,
                          channels_last=False):
    """Seconds of one training iteration of the detector of each mmdet config, alternating.

    Configs are paths or names like ``mmdet::yolo/yolov3_mobilenetv2_8xb24-320-300e_coco.py``.
    An iteration is ``model.train_step`` on a synthetic batch (``batch_size`` images of
    ``image_size``², five random boxes each): pre-processing, forward, losses, backward and an SGD
    step. Only the model of each config is used; no dataset is read. ``channels_last`` converts
    every model's weights to channels-last (the feature maps follow).

    Returns:
        dict: config path -> list of ``repeats`` durations in seconds.
    """
    from mmdet.testing import demo_mm_inputs
    from mmengine.optim import OptimWrapper

    from ..utils.config import build_model, load_config

    runs = {}
    for path in configs:
        cfg = load_config(path)
        model = build_model(cfg).train()
        if channels_last:
            model.to(memory_format=torch.channels_last)
        optim_wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9))
        data = demo_mm_inputs(
            batch_size, [(3, image_size, image_size)] * batch_size,
            num_items=[5] * batch_size,
            num_classes=cfg.model.bbox_head.num_classes)
        runs[path] = (lambda model=model, data=data, optim_wrapper=optim_wrapper: model.train_step(
            data, optim_wrapper))
    return measure_latency(runs, warmup, repeats, 'cpu')
