"""The rate of one large matrix product on this machine, in a runtime and a precision: the limit
against which a network's latency is read, as the time its multiply-adds take at that rate.

A network whose latency is close to its work at this rate runs at the limit of the matrix
products; one far above it spends its time elsewhere (element-wise passes, conversions, layout
copies). The product is a linear layer of ``4096 x 1024`` tokens by ``1024 x 1024`` weights
(4.3 G multiply-adds), large enough that the kernels run at their rate and not at the cost of a
call, exported and quantized as the benchmark exports the models (:func:`benchmark.runtime_run`).
"""
import statistics
import time
from typing import Tuple

import torch
import torch.nn as nn

from .benchmark import build, runtime_run
from .complexity import complexity

#: (tokens, input channels, output channels) of the product.
SHAPE = (4096, 1024, 1024)


def matmul_rate(runtime: str,
                precision: str,
                threads: int = None,
                repeats: int = 7,
                shape: Tuple[int, int, int] = SHAPE) -> float:
    """G multiply-adds a second of one linear layer of ``shape`` in ``runtime``
    ('onnxruntime' or 'executorch') and ``precision`` ('fp32' or 'int8'), the median of
    ``repeats`` runs after one warm-up run."""
    tokens, inputs, outputs = shape
    layer = nn.Linear(inputs, outputs, bias=False).eval()
    run = runtime_run(layer, runtime, precision, torch.rand(1, tokens, inputs), threads)
    run()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return tokens * inputs * outputs / statistics.median(seconds) / 1e9


def work_multiples(records, rates):
    """Each timed record of :func:`benchmark.run` with its work: ``macs`` (the backbone's
    multiply-adds at its size, :func:`complexity`), ``work_ms`` (their time at the rate of its
    precision in ``rates``, {precision: G multiply-adds a second}) and ``multiple`` (latency /
    work_ms)."""
    macs = {}
    rows = []
    for record in records:
        if 'latency' not in record or record['mode'] not in rates:
            continue
        key = record['model'], tuple(record['size'])
        if key not in macs:
            macs[key] = complexity(build(key[0], 'plain'), key[1], None)[1]
        work_ms = macs[key] / rates[record['mode']] / 1e6
        rows.append(
            dict(
                model=record['model'],
                size=record['size'],
                mode=record['mode'],
                macs=macs[key],
                work_ms=work_ms,
                multiple=record['latency']['median'] / work_ms))
    return rows
