"""mmdeploy's backend model checked against the PyTorch model of the toolbox, image by image.

Both models get the same input: mmdeploy's ``create_input`` of the image (the config's test
pipeline, with the deploy config's static size), each through its own data preprocessor. The
PyTorch model is built from the config by the toolbox's registry, as the toolbox's own
``init_model``/``init_detector`` do, not by mmdeploy, which calls the backbone's
``switch_to_deploy()`` before exporting: what mmdeploy changes in the model is checked too.
What is compared:

- classifier: the scores (softmax), max abs difference;
- segmentor: the label maps, pixel by pixel (a pixel may differ only where PyTorch's two best
  logits are within ``tolerance``), and, where the graph outputs logits (``with_argmax=False``),
  their max abs difference;
- detector: the detections scoring above the model's ``test_cfg.score_thr``, matched one to one
  (same label, box IoU, score difference). mmdeploy's YOLOv3 graph keeps every score, mmdet only
  the (box, class) pairs whose class score is above ``score_thr``; the detections scoring above
  it are the same in both (a box can only be suppressed by one that scores higher, and every box
  scoring above ``score_thr`` is a candidate of both), the others are dropped here. A detection
  whose score is within ``score_tolerance`` of the threshold may be in one list only.
"""
import copy
from typing import List

import torch

from ...checkpoint.state_dict import load_pretrained
from ...tasks import task_of
from ...tasks.base import BackendMismatchError
from ...tasks.detection import MIN_IOU, SCORE_TOLERANCE
from ...tasks.segmentation import TOLERANCE
from ...utils.config import build_model, with_model_preprocessor


def compare_with_pytorch(deploy_cfg,
                         model_cfg,
                         checkpoint: str,
                         backend_files: List[str],
                         images: List[str],
                         device: str = 'cpu') -> List[dict]:
    """Run the backend model and the toolbox's PyTorch model on ``images`` and compare.

    Args:
        deploy_cfg (mmengine.Config): The mmdeploy deploy config.
        model_cfg (mmengine.Config): The model config.
        checkpoint (str): The weights of the PyTorch model (those that were converted).
        backend_files (list[str]): The backend's model files (ONNX Runtime: the ONNX file).
        images (list[str]): Image files.
        device (str): Device of both models. Defaults to 'cpu'.

    Returns:
        list[dict]: One record per image: ``image``, ``task`` and the task's figures
        (the adapter's ``compare_backend``: :mod:`mmxformer.tasks`).
    """
    from mmdeploy.apis.utils import build_task_processor
    from mmdeploy.utils import get_input_shape
    task_processor = build_task_processor(model_cfg, deploy_cfg, device)
    backend_model = task_processor.build_backend_model(backend_files)
    task = task_of(model_cfg)
    reference = _pytorch_model(model_cfg, checkpoint, device)
    input_shape = get_input_shape(deploy_cfg)
    records = []
    for image in images:
        data, _ = task_processor.create_input(image, input_shape)
        with torch.no_grad():
            expected = reference.test_step(copy.deepcopy(data))[0]
            actual = backend_model.test_step(copy.deepcopy(data))[0]
            record = task.compare_backend(expected, actual, backend_model, data, deploy_cfg,
                                          model_cfg)
        records.append(dict(image=image, task=task.toolbox, **record))
    return records


def _pytorch_model(model_cfg, checkpoint, device):
    """The model of ``model_cfg`` as the toolbox builds it, with every weight of ``checkpoint``
    (read with weights_only=True) and BN for SyncBN."""
    from mmengine.model import revert_sync_batchnorm
    model = build_model(with_model_preprocessor(model_cfg))
    load_pretrained(model, checkpoint)
    return revert_sync_batchnorm(model).to(device).eval()


def check_records(records, tolerance=TOLERANCE, min_iou=MIN_IOU, score_tolerance=SCORE_TOLERANCE):
    """Raise :class:`BackendMismatchError` naming every image whose figures are out of bounds.

    Bounds: ``max_abs_diff`` (scores, logits) at most ``tolerance``; no ``label_mismatches``;
    detections: none unmatched, every IoU at least ``min_iou``, every score difference at most
    ``score_tolerance``.
    """
    failures = []
    for record in records:
        problems = []
        if not record.get('max_abs_diff', 0.) <= tolerance:  # also catches NaN
            problems.append(f"max abs difference {record['max_abs_diff']:.3g} > {tolerance:g}")
        if record.get('same_label') is False:
            problems.append('another top class')
        if record.get('label_mismatches'):
            problems.append(f"{record['label_mismatches']} pixels of another label")
        if record.get('unmatched'):
            problems.append(f"detections (source, label, score) without a match: "
                            f"{record['unmatched']}")
        if record.get('min_iou', 1.) < min_iou:
            problems.append(f"a box IoU of {record['min_iou']:.4f} < {min_iou}")
        if not record.get('max_score_diff', 0.) <= score_tolerance:
            problems.append(f"a score difference of {record['max_score_diff']:.3g} > "
                            f'{score_tolerance:g}')
        if problems:
            failures.append(f"{record['image']}: {'; '.join(problems)}")
    if failures:
        raise BackendMismatchError('The backend model and PyTorch disagree:\n' +
                                   '\n'.join(failures))


def format_record(record):
    """One line of figures for a record of :func:`compare_with_pytorch`."""
    keys = ('max_abs_diff', 'same_label', 'label_agreement', 'label_mismatches', 'num_expected',
            'num_actual', 'matched', 'min_iou', 'max_score_diff', 'unmatched')
    figures = [f'{key} {_format(record[key])}' for key in keys if key in record]
    return f"{record['image']}: {', '.join(figures)}"


def _format(value):
    return f'{value:.6g}' if isinstance(value, float) else str(value)
