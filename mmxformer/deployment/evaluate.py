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
from typing import List

import torch

from ..data.splits import split_loader_cfg
from ..utils.config import toolbox_of
from .export.executorch import load_method, run_program
from .export.network import build_network


class DeployedNetwork:
    """An exported network run by its own runtime: a ``.pte`` by ExecuTorch (XNNPACK), a
    ``.onnx`` by onnxruntime (CPU). Its input is the data preprocessor's output.

    Args:
        path (str): The file.

    Raises:
        ValueError: the file is neither ``.pte`` nor ``.onnx``.
    """

    def __init__(self, path: str):
        self.path = path
        if path.endswith('.pte'):
            method = load_method(path)
            sizes = tuple(method.metadata.input_tensor_meta(0).sizes())
            self._run = lambda x: run_program(method, x)
        elif path.endswith('.onnx'):
            import onnxruntime as ort
            session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
            sizes = tuple(session.get_inputs()[0].shape)
            self._run = lambda x: [
                torch.from_numpy(out)
                for out in session.run(None, {session.get_inputs()[0].name: x.numpy()})
            ]
        else:
            raise ValueError(f'{path}: an ExecuTorch program (.pte) or an ONNX file (.onnx) '
                             'is evaluated; this is neither')
        # static (1, 3, H, W) as the export tools write them; None where an axis is dynamic
        self.input_shape = tuple(s if isinstance(s, int) else None for s in sizes)

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
    """
    from mmengine.evaluator import Evaluator
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner

    init_default_scope(toolbox_of(cfg))
    networks = {path: DeployedNetwork(path) for path in files}
    pytorch = build_network(cfg, checkpoint)
    model, task = pytorch.model, pytorch.task
    loader = Runner.build_dataloader(split_loader_cfg(cfg, 'test'))
    evaluator_cfg = cfg.get('test_evaluator') or cfg.val_evaluator
    evaluators = {name: Evaluator(copy.deepcopy(evaluator_cfg)) for name in ['pytorch', *files]}
    for evaluator in evaluators.values():
        evaluator.dataset_meta = loader.dataset.metainfo
    agree = {path: [0, 0] for path in files}
    for data in loader:
        with torch.no_grad():
            reference = model.test_step(copy.deepcopy(data))
            evaluators['pytorch'].process(reference, data)
            batch = model.data_preprocessor(copy.deepcopy(data), False)
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
