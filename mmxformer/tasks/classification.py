"""mmpretrain's classifiers."""
import torch

from ..registry import TASKS
from .base import Task


def compare_scores(expected: torch.Tensor, actual: torch.Tensor) -> dict:
    """Classification scores: ``max_abs_diff`` and whether the top class is the same."""
    return dict(
        max_abs_diff=float((expected - actual).abs().max()),
        same_label=bool(expected.argmax() == actual.argmax()))


@TASKS.register_module('mmpretrain')
class ClassificationTask(Task):
    """An mmpretrain classifier: its network outputs the logits."""
    toolbox = 'mmpretrain'
    headline_metric = 'accuracy/top1'
    output_description = 'logits (B, num_classes), before softmax'
    agreement_description = 'same top-1 class'
    output_agreement_key = 'top1_agreement'

    def predictions(self, model, outputs, data_samples):
        return model.head._get_predictions(outputs[0], data_samples)

    def prediction_agreement(self, reference, deployed):
        same = sum(
            int(ref.pred_label.item() == dep.pred_label.item())
            for ref, dep in zip(reference, deployed))
        return same, len(reference)

    def output_agreement(self, model, expected, actual):
        return int((expected[0].argmax(1) == actual[0].argmax(1)).sum()), expected[0].shape[0]

    def compare_backend(self, expected, actual, backend_model, data, deploy_cfg, model_cfg):
        return compare_scores(expected.pred_score, actual.pred_score)

    def enable_show(self, cfg, hook, show_dir):
        hook.update(enable=True, out_dir=show_dir)
