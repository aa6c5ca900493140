"""What the deployment tools check before the work starts: that an input fits in memory, that an
output fits on its disk and does not replace an input. (That an error while writing names the file
that was not written is ``mmxformer.utils.fileio.naming_output``.)"""
import os.path as osp
import shutil
import weakref
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from ..models.backbones.xformer import free_memory


class ResourceError(ValueError):
    """An input needs more memory, or an output more disk space, than there is free; raised
    before the work starts. A ValueError: the input shape or the output path is what to
    change."""


class _LiveBytes(TorchDispatchMode):
    """The most bytes that the tensors made by the ops run under it hold at one time."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0

    def _free(self, nbytes):
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if any(result.alias_info is not None for result in func._schema.returns):
            return out  # a view of its input, or the input changed in place: no new memory
        for tensor in tree_flatten(out)[0]:  # tree_leaves is not in torch 2.1
            if isinstance(tensor, torch.Tensor):
                nbytes = tensor.untyped_storage().nbytes()
                self.live += nbytes
                self.peak = max(self.peak, self.live)
                weakref.finalize(tensor, self._free, nbytes)
        return out


def forward_memory(network: nn.Module, input_shape: Sequence[int]) -> Optional[int]:
    """The bytes that the tensors of one forward pass of ``network`` on a float32 input of
    ``input_shape`` hold at their peak, the input included: a lower bound of what running it
    takes.

    Measured without allocating anything: the network runs on PyTorch's meta device (shapes
    only), with its weights replaced there for the call.

    Returns:
        int | None: The bytes; None where an op of the network has no meta kernel.
    """
    state = {
        name: torch.empty_like(tensor, device='meta')
        for name, tensor in [*network.named_parameters(), *network.named_buffers()]
    }
    x = torch.empty(tuple(input_shape), device='meta')
    counter = _LiveBytes()
    try:
        with torch.no_grad(), counter:
            torch.func.functional_call(network, state, (x, ))
    except NotImplementedError:
        return None
    return counter.peak + x.numel() * x.element_size()


def check_memory(network: nn.Module, input_shape: Sequence[int]) -> None:
    """Raise if one forward pass of ``network`` on an input of ``input_shape`` needs more memory
    than the machine has free (see :func:`forward_memory`).

    Raises:
        ResourceError: Says how much it needs at least, and how much is free.
    """
    free = free_memory(torch.device('cpu'))
    if free is None:
        return
    need = forward_memory(network, input_shape)
    if need is not None and need > free:
        raise ResourceError(f'an input of {tuple(input_shape)} needs at least {_size(need)} for '
                            f'the tensors of one forward pass of the model, and this machine '
                            f'has {_size(free)} free: use a smaller input shape')


def weight_bytes(network: nn.Module) -> int:
    """The bytes of the parameters of ``network``: about what an exported file of it holds."""
    return sum(p.numel() * p.element_size() for p in network.parameters())


def check_disk_space(path: str, need: int, what: str) -> None:
    """Raise if the disk that ``path`` would be written to has less than ``need`` bytes free.

    Args:
        path (str): The file to write (it, or its directory, need not exist yet).
        need (int): The bytes it needs at least.
        what (str): What needs them, for the message (e.g. "the model's weights").

    Raises:
        ResourceError: Names the directory, what is free there and what is needed.
    """
    directory = osp.dirname(osp.abspath(path))
    while not osp.isdir(directory):
        directory = osp.dirname(directory)
    free = shutil.disk_usage(directory).free
    if need > free:
        raise ResourceError(f'{path} needs at least {_size(need)} ({what}), and {directory} has '
                            f'{_size(free)} free: free some space there or write elsewhere')


def check_output_is_no_input(out: str, inputs: Dict[str, Optional[str]]) -> None:
    """Raise if ``out`` is one of the files that the tool reads (``--overwrite`` would replace
    it with its output).

    Args:
        out (str): The file to write.
        inputs (dict[str, str | None]): What each input is (e.g. 'the checkpoint') -> its path.

    Raises:
        ValueError: Names the input.
    """
    for what, path in inputs.items():
        if path and osp.exists(out) and osp.exists(path) and osp.samefile(out, path):
            named = f' ({path})' if path != out else ''
            raise ValueError(f'{out} is {what}{named}, which it would replace: write to another '
                             'file')


def _size(nbytes):
    if nbytes < 1024:
        return f'{nbytes} B'
    for unit in ('KiB', 'MiB', 'GiB'):
        nbytes /= 1024
        if nbytes < 1024 or unit == 'GiB':
            return f'{nbytes:.1f} {unit}'
