"""A hook for tests/test_tools/test_dist_train.py, imported by the training processes through
``custom_imports``: at the end of training each rank writes what it trained to
``<out_dir>/rank<rank>.json``."""
import hashlib
import json
import os
import os.path as osp

from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


def state_digest(tensors):
    """SHA-256 of named tensors (a state dict, or named parameters), whatever their order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(tensors.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@HOOKS.register_module()
class RankDigestHook(Hook):
    """Write the rank, world size, model wrapper, iterations and digests of the parameters
    (``params_sha256``) and of the whole state dict, BN statistics included (``state_sha256``).

    Args:
        out_dir (str): Directory of the JSON files.
    """

    def __init__(self, out_dir):
        self.out_dir = out_dir

    def after_train(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        rank, world_size = get_dist_info()
        record = dict(
            rank=rank,
            world_size=world_size,
            wrapper=type(runner.model).__name__,
            iters=runner.iter,
            params_sha256=state_digest(dict(model.named_parameters())),
            state_sha256=state_digest(model.state_dict()))
        os.makedirs(self.out_dir, exist_ok=True)
        with open(osp.join(self.out_dir, f'rank{rank}.json'), 'w') as file:
            json.dump(record, file)
