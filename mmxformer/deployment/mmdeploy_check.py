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

import torch

from ..utils.state_dict import load_pretrained

TOLERANCE = 1e-4
MIN_IOU = 0.99
SCORE_TOLERANCE = 1e-3


class BackendMismatchError(RuntimeError):
    """The backend model does not give the PyTorch model's predictions."""


def compare_with_pytorch(deploy_cfg, model_cfg, checkpoint, backend_files, images, device='cpu'):
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
        (see :func:`compare_scores`, :func:`compare_segmentation`, :func:`compare_detections`).
    """
    from mmdeploy.apis.utils import build_task_processor
    from mmdeploy.utils import get_codebase_config, get_input_shape
    task_processor = build_task_processor(model_cfg, deploy_cfg, device)
    backend_model = task_processor.build_backend_model(backend_files)
    toolbox = get_codebase_config(deploy_cfg)['type']
    reference = _pytorch_model(toolbox, model_cfg, checkpoint, device)
    input_shape = get_input_shape(deploy_cfg)
    records = []
    for image in images:
        data, _ = task_processor.create_input(image, input_shape)
        with torch.no_grad():
            expected = reference.test_step(copy.deepcopy(data))[0]
            actual = backend_model.test_step(copy.deepcopy(data))[0]
            if toolbox == 'mmpretrain':
                record = compare_scores(expected.pred_score, actual.pred_score)
            elif toolbox == 'mmseg':
                logits = None
                if not get_codebase_config(deploy_cfg).get('with_argmax', True):
                    inputs = backend_model.data_preprocessor(copy.deepcopy(data))['inputs']
                    outputs = backend_model.wrapper({backend_model.input_name: inputs})
                    logits = outputs[backend_model.output_names[0]][0]
                record = compare_segmentation(expected, actual.pred_sem_seg.data, logits)
            else:
                record = compare_detections(expected.pred_instances, actual.pred_instances,
                                            model_cfg.model.test_cfg.get('score_thr', 0.))
        records.append(dict(image=image, task=toolbox, **record))
    return records


def _pytorch_model(toolbox, model_cfg, checkpoint, device):
    """The model of ``model_cfg`` as the toolbox builds it, with every weight of ``checkpoint``
    (read with weights_only=True) and BN for SyncBN."""
    from importlib import import_module

    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    model = copy.deepcopy(model_cfg.model)
    model.pop('pretrained', None)
    # mmpretrain's configs keep the data preprocessor at the top level
    model.setdefault('data_preprocessor', model_cfg.get('data_preprocessor'))
    init_default_scope(toolbox)
    model = import_module(f'{toolbox}.registry').MODELS.build(model)
    load_pretrained(model, checkpoint)
    return revert_sync_batchnorm(model).to(device).eval()


def compare_scores(expected, actual):
    """Classification scores: ``max_abs_diff`` and whether the top class is the same."""
    return dict(max_abs_diff=float((expected - actual).abs().max()),
                same_label=bool(expected.argmax() == actual.argmax()))


def compare_segmentation(expected, labels, logits=None, tolerance=TOLERANCE):
    """A segmentor's label map (and logits) against PyTorch's data sample ``expected``.

    Returns:
        dict: ``label_agreement`` (fraction of equal pixels), ``label_mismatches`` (pixels that
        differ although PyTorch's two best logits are more than ``tolerance`` apart) and, given
        ``logits``, ``max_abs_diff``.
    """
    expected_logits = expected.seg_logits.data
    expected_labels = expected.pred_sem_seg.data
    if labels.shape != expected_labels.shape:
        raise BackendMismatchError(f'The backend gives a label map of shape '
                                   f'{tuple(labels.shape)}, PyTorch {tuple(expected_labels.shape)}')
    differ = (labels != expected_labels)[0]
    top2 = expected_logits.topk(2, dim=0).values
    record = dict(label_agreement=1. - float(differ.float().mean()),
                  label_mismatches=int((differ & (top2[0] - top2[1] > tolerance)).sum()))
    if logits is not None:
        record['max_abs_diff'] = float((torch.as_tensor(logits) - expected_logits).abs().max())
    return record


def compare_detections(expected, actual, score_thr, score_tolerance=SCORE_TOLERANCE):
    """Detections scoring above ``score_thr`` (InstanceData), matched one to one.

    Each detection of ``expected``, best first, is matched with the detection of ``actual`` of
    the same label that overlaps it most and is not matched yet.

    Returns:
        dict: ``num_expected`` and ``num_actual`` (detections above ``score_thr``), ``matched``,
        ``min_iou`` and ``max_score_diff`` over the matches (1 and 0 without any), and
        ``unmatched``: the detections of either list without a match of the same label, with
        their score, beyond those within ``score_tolerance`` of the threshold.
    """
    from mmdet.structures.bbox import bbox_overlaps
    expected = expected[expected.scores > score_thr]
    actual = actual[actual.scores > score_thr]
    ious = bbox_overlaps(expected.bboxes, actual.bboxes)
    free = torch.ones(len(actual), dtype=torch.bool)
    matched_ious, score_diffs, unmatched = [], [], []
    for i in expected.scores.argsort(descending=True).tolist():
        candidates = free & (actual.labels == expected.labels[i])
        if not candidates.any():
            unmatched.append(('pytorch', int(expected.labels[i]), float(expected.scores[i])))
            continue
        j = int(torch.where(candidates, ious[i], ious.new_tensor(-1.)).argmax())
        free[j] = False
        matched_ious.append(float(ious[i, j]))
        score_diffs.append(abs(float(expected.scores[i] - actual.scores[j])))
    unmatched += [('backend', int(actual.labels[j]), float(actual.scores[j]))
                  for j in torch.where(free)[0].tolist()]
    return dict(num_expected=len(expected), num_actual=len(actual), matched=len(matched_ious),
                min_iou=min(matched_ious, default=1.), max_score_diff=max(score_diffs, default=0.),
                unmatched=[item for item in unmatched
                           if item[2] > score_thr + score_tolerance])


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
