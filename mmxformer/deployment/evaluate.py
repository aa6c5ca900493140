"""Accuracy of exported files on a config's test set, side by side with the PyTorch model.

Each exported file (an ExecuTorch program or an ONNX file, as tools/deployment/ writes them) runs
in its own runtime on the inputs that the model's data preprocessor makes of the test set; its
outputs go through the toolbox's own post-processing (mmpretrain's head, mmdet's
``predict_by_feat`` with NMS, mmseg's ``postprocess_result``) and the config's own
``test_evaluator``. The PyTorch model runs on the same batches through its ``test_step``, which
is what ``tools/test.py`` evaluates. The agreement of each file's predictions with PyTorch's is
counted on the way (the adapter's ``prediction_agreement``, :mod:`mmxformer.tasks`).
"""
import copy
import os.path as osp
import struct
from typing import List, Optional, Sequence, Tuple

import torch

from ..data.splits import split_loader_cfg
from ..utils.config import toolbox_of
from .export.executorch import load_method, run_program
from .export.network import build_network
from .quantize.calibration import check_split

#: What is evaluated: the files of the export tools, by suffix.
WRITTEN_BY = {
    '.onnx': 'tools/deployment/export_onnx.py or quantize_onnx.py',
    '.pte': 'tools/deployment/export_executorch.py',
}


class DeployedNetwork:
    """An exported network run by its own runtime: a ``.pte`` by ExecuTorch (XNNPACK), a
    ``.onnx`` by onnxruntime (CPU). Its input is the data preprocessor's output.

    Args:
        path (str): The file.

    Attributes:
        input_shape (tuple): The input's shape, None where an axis is dynamic.
        output_shapes (list[tuple]): The outputs' shapes, as the file declares them.
        output_names (list[str] | None): The outputs' names (ONNX; None for a .pte).
        exported_from (str | None): The config the file was exported from, as its metadata
            says (ONNX files of export_onnx.py; None otherwise).

    Raises:
        ValueError: The file is missing, empty, neither ``.pte`` nor ``.onnx``, or one that its
            runtime cannot load; the message says what it is.
    """

    def __init__(self, path: str):
        self.path = path
        suffix = osp.splitext(path)[1]
        if suffix not in WRITTEN_BY:
            raise ValueError(f'{path}: an ExecuTorch program (.pte) or an ONNX file (.onnx) '
                             'is evaluated; this is neither')
        if not osp.exists(path):
            raise ValueError(f'{path}: no such file')
        if not osp.isfile(path):
            raise ValueError(f'{path} is a directory, not a file')
        if suffix == '.pte':
            self._load_program()
        else:
            self._load_onnx()

    def _load_program(self):
        try:
            method = load_method(self.path)
        except RuntimeError as error:
            raise self._unreadable(f'ExecuTorch: {error}') from None
        meta = method.metadata
        self.input_shape = tuple(meta.input_tensor_meta(0).sizes())
        self.output_shapes = [
            tuple(meta.output_tensor_meta(i).sizes()) for i in range(meta.num_outputs())
        ]
        self.output_names = self.exported_from = None
        self._run = lambda x: run_program(method, x)

    def _load_onnx(self):
        import onnxruntime as ort
        from onnxruntime.capi import onnxruntime_pybind11_state as ort_state
        try:
            session = ort.InferenceSession(self.path, providers=['CPUExecutionProvider'])
        except (ort_state.InvalidProtobuf, ort_state.InvalidArgument, ort_state.InvalidGraph,
                ort_state.Fail, ort_state.NotImplemented) as error:
            # onnxruntime's message names the file again: keep what follows
            raise self._unreadable(f'onnxruntime: {str(error).split("failed:")[-1]}') from None
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f'{self.path} has {len(inputs)} inputs; the files of '
                             f'{WRITTEN_BY[".onnx"]} have one, the image batch')
        name = inputs[0].name
        self.input_shape = tuple(_static(size) for size in inputs[0].shape)
        self.output_shapes = [
            tuple(_static(size) for size in output.shape) for output in session.get_outputs()
        ]
        self.output_names = [output.name for output in session.get_outputs()]
        self.exported_from = session.get_modelmeta().custom_metadata_map.get('config') or None
        self._run = lambda x: [
            torch.from_numpy(out) for out in session.run(None, {name: x.numpy()})
        ]

    def _unreadable(self, reason):
        suffix = osp.splitext(self.path)[1]
        return ValueError(f'{self.path} cannot be loaded: {_describe_file(self.path, suffix)} '
                          f'({reason}); give a {suffix} file written by {WRITTEN_BY[suffix]}')

    def __call__(self, inputs):
        """The outputs on a batch (B, 3, H, W), one image at a time, concatenated."""
        self.check_input(inputs)
        per_image = [self._run(x[None].contiguous()) for x in inputs.float()]
        return [torch.cat(outputs) for outputs in zip(*per_image)]

    def check_input(self, inputs):
        """Raise if a batch's images have another size than the file's static one."""
        want = self.input_shape[2:]
        got = tuple(inputs.shape[2:])
        if any(w is not None and w != g for w, g in zip(want, got)):
            raise ValueError(
                f'{self.path} was exported for inputs of {want[0]}x{want[1]}, but the test '
                f"pipeline gives {got[0]}x{got[1]}: export it at the test pipeline's size "
                f'(--shape {got[0]} {got[1]})')

    def check_outputs(self, expected: Sequence[torch.Tensor], names: Sequence[str],
                      config: str) -> None:
        """Raise unless the file's outputs are those of the config's network: as many, with
        the same names (ONNX), ranks and sizes of axis 1 (classes, or channels). The other
        axes follow the input size, which :meth:`check_input` checks.

        Args:
            expected (list[torch.Tensor]): The PyTorch network's outputs on one image.
            names (list[str]): The names the config's adapter gives them.
            config (str): The config, for the message.

        Raises:
            ValueError: Says what the file gives, what the model gives, and which config the
                file seems to be for.
        """
        want = [tuple(t.shape) for t in expected]
        got = self.output_shapes
        fits = len(got) == len(want) and all(
            len(g) == len(w) and (len(g) < 2 or g[1] in (None, w[1])) for g, w in zip(got, want))
        if fits and self.output_names in (None, list(names)):
            return
        config = osp.basename(config)
        if self.exported_from and self.exported_from != config:
            origin = (f'; it was exported from {self.exported_from} (its metadata): evaluate it '
                      'with that config')
        elif self.exported_from:
            origin = ('; it was exported from a config of that name, with other settings '
                      '(--cfg-options?)')
        else:
            looks = _looks_like(got)
            origin = f'; its outputs look like {looks}' if looks else ''
        raise ValueError(f'{self.path} is not an export of the model of {config}: it gives '
                         f'{_outputs(got, self.output_names)}; the model gives '
                         f'{_outputs(want, names)}{origin}')


def _describe_file(path, suffix):
    """What a file that its runtime cannot load seems to be, from its first bytes: empty, text,
    a checkpoint, a file of the other runtime, a program cut short."""
    size = osp.getsize(path)
    with open(path, 'rb') as f:
        head = f.read(64)
    if not head:
        return 'the file is empty'
    if head[4:6] == b'ET':  # an ExecuTorch program's flatbuffer identifier, 'ET12'
        if suffix != '.pte':
            return 'it is an ExecuTorch program: name it .pte'
        expected = _program_size(head)
        if expected is not None and expected > size:
            return f'it is an ExecuTorch program cut short: its header says {expected} bytes, ' \
                   f'the file has {size}'
        return 'it is an ExecuTorch program, damaged or of another version of ExecuTorch'
    if head.startswith(b'PK\x03\x04'):
        return 'it is a zip archive (a PyTorch checkpoint?)'
    if head[:1] == b'\x80':
        return 'it is a pickle (a PyTorch checkpoint?)'
    if all(32 <= byte < 127 or byte in b'\t\n\r' for byte in head):
        return f'it is text ({head.decode().strip().splitlines()[0][:40]!r}...)'
    if suffix == '.pte' and head[:1] == b'\x08':  # ModelProto's first field, ir_version
        return 'it looks like an ONNX file: name it .onnx'
    return 'it is damaged or cut short'


def _program_size(head):
    """The size an ExecuTorch program's extended header ('eh00') gives, or None."""
    if head[8:12] != b'eh00' or len(head) < 32:
        return None
    header_size, program_size, segment_offset = struct.unpack_from('<IQQ', head, 12)
    segment_size = struct.unpack_from('<Q', head, 32)[0] if header_size >= 32 else 0
    return segment_offset + segment_size if segment_size else program_size


def _static(size):
    return size if isinstance(size, int) else None


def _format(shape):
    return '(' + ', '.join('?' if size is None else str(size) for size in shape) + ')'


def _outputs(shapes, names):
    if names is None:
        listed = ', '.join(_format(shape) for shape in shapes)
    else:
        listed = ', '.join(f'{name} {_format(shape)}' for name, shape in zip(names, shapes))
    return f'{len(shapes)} output{"s" if len(shapes) != 1 else ""}: {listed}'


def _looks_like(shapes: List[Tuple[Optional[int], ...]]) -> Optional[str]:
    """The kind of network that outputs ``shapes``, where they tell."""
    if len(shapes) == 1 and len(shapes[0]) == 2:
        return f"a classifier's logits ({shapes[0][1]} classes)"
    if len(shapes) == 1 and len(shapes[0]) == 4:
        return f"a segmentor's logits ({shapes[0][1]} classes)"
    if len(shapes) > 1 and all(len(shape) == 4 for shape in shapes):
        return f"a detector's head maps ({len(shapes)} levels)"
    return None


def evaluate_deployed(cfg, checkpoint: str, files: List[str]) -> dict:
    """Evaluate the PyTorch model of a config and exported files of it on its test set.

    Args:
        cfg (mmengine.Config): An mmpretrain, mmdet or mmseg config; its ``test_dataloader``
            and ``test_evaluator`` are used as ``tools/test.py`` uses them.
        checkpoint (str): The weights of the PyTorch model (the files' source).
        files (list[str]): ``.pte`` and ``.onnx`` files.

    Returns:
        dict: ``images``, ``headline`` (the metric the table shows) and ``models``: one entry
        for 'pytorch' and one per file, each with ``metrics`` (the evaluator's) and, for the
        files, ``agreement`` (with PyTorch's predictions, the adapter's
        ``prediction_agreement``) and ``bytes``.

    Raises:
        ValueError: Before anything is evaluated: a file is given twice, the config has no test
            set or evaluator, a file cannot be loaded (see :class:`DeployedNetwork`), or its
            outputs or input size are not those of the config's model.
    """
    from mmengine.evaluator import Evaluator
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner

    twice = sorted({path for path in files if files.count(path) > 1})
    if twice:
        raise ValueError(f'{", ".join(twice)} given twice: give each file once')
    check_split(cfg, 'test', 'the exported files are evaluated on it')
    evaluator_cfg = cfg.get('test_evaluator') or cfg.get('val_evaluator')
    if not evaluator_cfg:
        raise ValueError(f'{cfg.filename} has no test_evaluator (nor val_evaluator): the '
                         'exported files are evaluated with it')
    init_default_scope(toolbox_of(cfg))
    networks = {path: DeployedNetwork(path) for path in files}
    pytorch = build_network(cfg, checkpoint)
    model, task = pytorch.model, pytorch.task
    loader = Runner.build_dataloader(split_loader_cfg(cfg, 'test'))
    evaluators = {name: Evaluator(copy.deepcopy(evaluator_cfg)) for name in ['pytorch', *files]}
    for evaluator in evaluators.values():
        evaluator.dataset_meta = loader.dataset.metainfo
    agree = {path: [0, 0] for path in files}
    checked = False
    for data in loader:
        with torch.no_grad():
            batch = model.data_preprocessor(copy.deepcopy(data), False)
            if not checked:  # every file, before the first is evaluated
                expected = pytorch(batch['inputs'][:1])
                names = task.output_names(len(expected))
                for network in networks.values():
                    network.check_outputs(expected, names, cfg.filename or 'the config')
                    network.check_input(batch['inputs'])
                checked = True
            reference = model.test_step(copy.deepcopy(data))
            evaluators['pytorch'].process(reference, data)
            for path, network in networks.items():
                deployed = task.predictions(model, network(batch['inputs']),
                                            copy.deepcopy(batch['data_samples']))
                evaluators[path].process(deployed, data)
                same, total = task.prediction_agreement(reference, deployed)
                agree[path][0] += same
                agree[path][1] += total
    size = len(loader.dataset)
    results = {'pytorch': dict(metrics=_plain(evaluators['pytorch'].evaluate(size)))}
    for path in files:
        same, total = agree[path]
        results[path] = dict(
            metrics=_plain(evaluators[path].evaluate(size)),
            agreement=same / total if total else 1.,
            bytes=osp.getsize(path))
    return dict(images=size, headline=task.headline_metric, models=results)


def _plain(metrics):
    """The metrics as Python numbers (mmseg's are NumPy scalars, which JSON does not take)."""
    return {
        key: value.item() if hasattr(value, 'item') else value
        for key, value in metrics.items()
    }
