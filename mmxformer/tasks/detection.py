"""mmdet's detectors (YOLOv3)."""
import torch

from ..registry import TASKS
from .base import Task

#: Detections compared by :meth:`DetectionTask.prediction_agreement`: those scoring at least
#: this, the threshold above which mmdet's tools draw a detection (``--show-dir``), matched at
#: IoU 0.5.
DETECTION_SCORE_THR = 0.3
DETECTION_IOU_THR = 0.5
#: mmdeploy check: the smallest IoU of matched boxes, and the largest score difference.
MIN_IOU = 0.99
SCORE_TOLERANCE = 1e-3


def matched_detections(ref, dep, score_thr=DETECTION_SCORE_THR, iou_thr=DETECTION_IOU_THR):
    """Detections of two lists (InstanceData) scoring at least ``score_thr``, matched one to
    one: each of ``ref`` in order of score to the best unmatched one of ``dep`` with the same
    label and IoU ≥ ``iou_thr``.

    Returns:
        tuple[int, int]: matched, detections of both lists.
    """
    from mmdet.structures.bbox import bbox_overlaps
    ref = ref[ref.scores >= score_thr]
    dep = dep[dep.scores >= score_thr]
    ref = ref[ref.scores.argsort(descending=True)]
    iou = bbox_overlaps(ref.bboxes, dep.bboxes)
    iou[ref.labels[:, None] != dep.labels[None]] = 0
    taken = torch.zeros(len(dep), dtype=torch.bool)
    matched = 0
    for row in iou:
        row = row.masked_fill(taken, 0)
        if len(row) and row.max() >= iou_thr:
            taken[row.argmax()] = True
            matched += 1
    return matched, len(ref) + len(dep)


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
    return dict(
        num_expected=len(expected),
        num_actual=len(actual),
        matched=len(matched_ious),
        min_iou=min(matched_ious, default=1.),
        max_score_diff=max(score_diffs, default=0.),
        unmatched=[item for item in unmatched if item[2] > score_thr + score_tolerance])


@TASKS.register_module('mmdet')
class DetectionTask(Task):
    """An mmdet detector: its network outputs the head's raw maps, one per level."""
    toolbox = 'mmdet'
    headline_metric = 'coco/bbox_mAP_50'
    output_description = ('raw head outputs, one per level in the order of the head (YOLOv3: '
                          'strides 32, 16, 8); box decoding and NMS are not included')
    agreement_description = (f'detections scoring >= {DETECTION_SCORE_THR} matched (same label, '
                             f'IoU >= {DETECTION_IOU_THR})')
    output_agreement_key = 'objectness_agreement'
    dump_metric = 'DumpDetResults'

    def output_names(self, num_outputs):
        return [f'pred_map_{level}' for level in range(num_outputs)]

    def dynamic_axes(self, output_names):
        axes = {'input': {0: 'batch', 2: 'height', 3: 'width'}}
        for name in output_names:
            axes[name] = {0: 'batch', 2: f'{name}_height', 3: f'{name}_width'}
        return axes

    def predictions(self, model, outputs, data_samples):
        metas = [sample.metainfo for sample in data_samples]
        results = model.bbox_head.predict_by_feat(outputs, metas, rescale=True)
        return model.add_pred_to_datasample(data_samples, results)

    def prediction_agreement(self, reference, deployed):
        """Detections of both sides matched (:func:`matched_detections`), counted from both
        sides: 2 · matched out of the detections of both."""
        same = total = 0
        for ref, dep in zip(reference, deployed):
            matched, count = matched_detections(ref.pred_instances, dep.pred_instances)
            same += 2 * matched
            total += count
        return same, total

    def output_agreement(self, model, expected, actual):
        """The anchors whose objectness (sigmoid > 0.5 or not) is the same."""
        anchors = model.bbox_head.num_base_priors
        same = total = 0
        for want, got in zip(expected, actual):
            # YOLOv3: (B, anchors * (5 + classes), H, W); channel 4 of an anchor's is its
            # objectness logit
            want, got = (t.unflatten(1, (anchors, -1))[:, :, 4] for t in (want, got))
            same += int(((want > 0) == (got > 0)).sum())
            total += want.numel()
        return same, total

    def compare_backend(self, expected, actual, backend_model, data, deploy_cfg, model_cfg):
        return compare_detections(expected.pred_instances, actual.pred_instances,
                                  model_cfg.model.test_cfg.get('score_thr', 0.))

    def enable_show(self, cfg, hook, show_dir):
        hook.update(draw=True, test_out_dir=show_dir)
