"""Evaluator metrics that tools/test.py adds."""
import os
import os.path as osp
from typing import Any, Optional, Sequence

from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from mmengine.registry import METRICS

from ..utils.fileio import temporary_path

__all__ = ['AtomicDump', 'register_atomic_dump']


class AtomicDump(BaseMetric):
    """Run a metric that dumps the predictions to a file (mmengine's ``DumpResults``, mmdet's
    ``DumpDetResults``: one with ``out_file_path``) so that the file is never half-written.

    These metrics write their ``out_file_path`` in place: a full disk leaves a truncated file
    there, replacing earlier results. Here the metric writes a temporary file next to it, which
    is renamed into place once whole; on an error it is removed, and the ``OSError`` names
    ``out_file_path``.

    Args:
        dump (dict): The dump metric's config, built in the default scope (``dict(type=
            'DumpDetResults', out_file_path='results.pkl')``). Its ``collect_device`` and
            ``collect_dir`` serve here: this metric gathers the results of all ranks.
    """

    def __init__(self, dump: dict) -> None:
        self.dump = METRICS.build(dump)
        super().__init__(collect_device=self.dump.collect_device, collect_dir=self.dump.collect_dir)

    @property
    def dataset_meta(self) -> Optional[dict]:
        return self.dump.dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, dataset_meta: dict) -> None:
        self.dump.dataset_meta = dataset_meta

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        # what the dump metric keeps of a batch (on the CPU, ground truths dropped, masks encoded)
        self.dump.process(data_batch, data_samples)
        self.results.extend(self.dump.results)
        self.dump.results.clear()

    def compute_metrics(self, results: list) -> dict:
        out = self.dump.out_file_path
        directory = osp.dirname(osp.abspath(out))
        try:
            os.makedirs(directory, exist_ok=True)  # as mmengine's dump does
            # the suffix keeps the format: mmengine's dump reads it from the file name
            with temporary_path(directory, f'.{osp.basename(out)}.',
                                '.tmp' + osp.splitext(out)[1]) as tmp:
                self.dump.out_file_path = tmp
                try:
                    metrics = self.dump.compute_metrics(results)
                finally:
                    self.dump.out_file_path = out
                os.replace(tmp, out)
        except OSError as error:
            if error.errno is None:
                raise
            raise OSError(error.errno, error.strerror, out) from error
        print_log(f'The predictions are in {out}', logger='current')
        return metrics


def register_atomic_dump() -> str:
    """Add :class:`AtomicDump` to mmengine's root registry of metrics, which every scope reaches
    (mmxformer has no registry of metrics), for tools/test.py; importing mmxformer does not, so
    that it adds nothing there for a program that does not use it. Again: no error.

    Returns:
        str: Its name in the registry.
    """
    METRICS.register_module(module=AtomicDump, force=True)
    return AtomicDump.__name__
