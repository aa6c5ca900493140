"""The interface of a toolbox's adapter (:mod:`mmxformer.tasks`)."""
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn


class BackendMismatchError(RuntimeError):
    """A backend model (mmdeploy's) does not give the PyTorch model's predictions."""


class Task:
    """Everything that differs between the toolboxes, for one of them.

    Subclasses register themselves in :data:`mmxformer.registry.TASKS` under their toolbox's
    scope name and fill in the attributes and methods below.
    """
    #: The toolbox's scope name (``default_scope`` of its configs).
    toolbox: str = ''
    #: The metric of the toolbox's evaluator that a results table shows first.
    headline_metric: str = ''
    #: What the exported graph's outputs are.
    output_description: str = ''
    #: What :meth:`prediction_agreement` counts.
    agreement_description: str = ''
    #: The name of :meth:`output_agreement`'s fraction in an int8 export's record.
    output_agreement_key: str = ''
    #: The evaluator that ``tools/test.py --out`` adds to dump the raw predictions.
    dump_metric: str = 'DumpResults'

    def tensor_outputs(self, model: nn.Module, inputs: torch.Tensor, exported: bool = True):
        """The network's outputs, ``model(inputs, mode='tensor')``, as a toolbox's ``get_flops``
        counts them; ``exported``: as the exporters write them (see :meth:`output_description`).
        """
        return model(inputs, mode='tensor')

    def output_names(self, num_outputs: int) -> List[str]:
        """Names of the exported graph's outputs."""
        return ['logits']

    def dynamic_axes(self, output_names: Sequence[str]) -> dict:
        """Dynamic batch, height and width of the exported graph's input and outputs."""
        return {'input': {0: 'batch', 2: 'height', 3: 'width'}, 'logits': {0: 'batch'}}

    def predictions(self, model: nn.Module, outputs: List[torch.Tensor], data_samples: list):
        """The data samples with the predictions made from the network's outputs, post-processed
        as the toolbox's own ``predict`` does."""
        raise NotImplementedError

    def prediction_agreement(self, reference: list, deployed: list) -> Tuple[int, int]:
        """How many of a batch's predictions agree, and out of how many."""
        raise NotImplementedError

    def output_agreement(self, model: nn.Module, expected: List[torch.Tensor],
                         actual: List[torch.Tensor]) -> Tuple[int, int]:
        """How many of the network outputs' decisions agree (top-1 class, pixel label, anchor
        objectness), and out of how many."""
        raise NotImplementedError

    def compare_backend(self, expected, actual, backend_model, data, deploy_cfg, model_cfg) -> dict:
        """mmdeploy's backend model's prediction of one image (``actual``) against the PyTorch
        model's (``expected``); the figures of :mod:`mmxformer.deployment.mmdeploy.check`."""
        raise NotImplementedError

    def enable_show(self, cfg, hook: dict, show_dir: str) -> None:
        """Make ``tools/test.py`` draw the test set's predictions into ``show_dir``."""
        raise NotImplementedError
