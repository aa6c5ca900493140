"""mmseg's segmentors."""
import copy
import os.path as osp
from typing import Optional

import torch
import torch.nn.functional as F

from ..registry import TASKS
from .base import BackendMismatchError, Task

#: Logits closer than this may swap their order between two runtimes (see
#: :func:`compare_segmentation`).
TOLERANCE = 1e-4


def compare_segmentation(expected,
                         labels: torch.Tensor,
                         logits: Optional[torch.Tensor] = None,
                         tolerance: float = TOLERANCE) -> dict:
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
    record = dict(
        label_agreement=1. - float(differ.float().mean()),
        label_mismatches=int((differ & (top2[0] - top2[1] > tolerance)).sum()))
    if logits is not None:
        record['max_abs_diff'] = float((torch.as_tensor(logits) - expected_logits).abs().max())
    return record


@TASKS.register_module('mmseg')
class SegmentationTask(Task):
    """An mmseg segmentor: its exported network outputs the decoder's logits resized bilinearly
    to the input size, as mmseg's ``predict`` does."""
    toolbox = 'mmseg'
    headline_metric = 'mIoU'
    output_description = 'logits (B, num_classes, H, W) at the input size, before argmax'
    agreement_description = 'pixels with the same label'
    output_agreement_key = 'pixel_agreement'

    def tensor_outputs(self, model, inputs, exported=True):
        outputs = model(inputs, mode='tensor')
        if not exported:
            return outputs
        return F.interpolate(
            outputs,
            size=inputs.shape[2:],
            mode='bilinear',
            align_corners=model.decode_head.align_corners)

    def dynamic_axes(self, output_names):
        axes = {'input': {0: 'batch', 2: 'height', 3: 'width'}}
        return {**axes, 'logits': axes['input']}

    def predictions(self, model, outputs, data_samples):
        return model.postprocess_result(outputs[0], data_samples)

    def prediction_agreement(self, reference, deployed):
        same = total = 0
        for ref, dep in zip(reference, deployed):
            same += int((ref.pred_sem_seg.data == dep.pred_sem_seg.data).sum())
            total += ref.pred_sem_seg.data.numel()
        return same, total

    def output_agreement(self, model, expected, actual):
        return (int((expected[0].argmax(1) == actual[0].argmax(1)).sum()), expected[0][:,
                                                                                       0].numel())

    def compare_backend(self, expected, actual, backend_model, data, deploy_cfg, model_cfg):
        from mmdeploy.utils import get_codebase_config
        logits = None
        if not get_codebase_config(deploy_cfg).get('with_argmax', True):
            inputs = backend_model.data_preprocessor(copy.deepcopy(data))['inputs']
            outputs = backend_model.wrapper({backend_model.input_name: inputs})
            logits = outputs[backend_model.output_names[0]][0]
        return compare_segmentation(expected, actual.pred_sem_seg.data, logits)

    def enable_show(self, cfg, hook, show_dir):
        hook.update(draw=True)  # mmseg's hook draws through the visualizer's own backends
        cfg.visualizer.save_dir = osp.join(cfg.work_dir, show_dir)
