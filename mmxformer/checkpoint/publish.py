"""Checkpoints for release: a part of a checkpoint for another task, a training checkpoint as a
release file."""
import datetime
import os
import os.path as osp
from collections import OrderedDict
from typing import Any, Dict, Optional, Tuple

import torch

from ..utils.fileio import file_sha256, save_atomically, temporary_path
from .safe_load import load_checkpoint_safely
from .state_dict import read_state_dict, strip_prefix, with_trailing_dot


def convert_checkpoint(src: str,
                       dst: str,
                       prefix: str = 'backbone.',
                       keep_prefix: bool = True) -> Dict[str, Any]:
    """Extract one part of a checkpoint (a classifier's backbone, by default) into a new file.

    The result holds only ``state_dict`` (no optimizer, scheduler or message hub), so it loads
    with torch's default allow-list. With ``keep_prefix`` it is used as
    ``init_cfg=dict(type='Pretrained', checkpoint=dst, prefix='backbone.')`` in detectors and
    segmentors, as the classifier's own file would be; without, it is used with no prefix.

    Args:
        src (str): The source checkpoint (a local file).
        dst (str): The file to write (atomically).
        prefix (str): The part to keep. Defaults to 'backbone.'.
        keep_prefix (bool): Keep ``prefix`` in the keys. Defaults to True.

    Returns:
        dict: The state dict written.
    """
    part = strip_prefix(read_state_dict(src), prefix)
    if keep_prefix:
        part = OrderedDict((with_trailing_dot(prefix) + key, value) for key, value in part.items())
    save_atomically(dict(state_dict=part, meta=dict(converted_from=osp.basename(src))), dst)
    return part


def publish_checkpoint(src: str,
                       out_dir: str,
                       name: str,
                       ema: bool = False,
                       date: Optional[datetime.date] = None) -> Tuple[str, str]:
    """Write a training checkpoint as a release file, ``<name>_<YYYYMMDD>-<sha256[:8]>.pth``.

    Optimizer, scheduler and message hub are dropped; ``state_dict`` and ``meta`` remain.
    With mmengine's ``EMAHook`` the checkpoint's ``state_dict`` already holds the EMA weights
    and ``ema_state_dict`` the raw ones (under ``module.``): the hook swaps them when saving.

    Args:
        src (str): The training checkpoint.
        out_dir (str): Where to write the release file.
        name (str): Model name, the start of the file name.
        ema (bool): Publish the EMA weights (the checkpoint must come from a run with
            ``EMAHook``); otherwise the raw weights. Defaults to False.
        date (datetime.date, optional): The date in the name. Defaults to today.

    Returns:
        tuple[str, str]: The path written and its SHA-256.
    """
    if not name or osp.basename(name) != name:
        raise ValueError(f'name must be a plain file name without directories, got {name!r}')
    name = name[:-len('.pth')] if name.endswith('.pth') else name
    checkpoint = load_checkpoint_safely(src)
    if 'state_dict' not in checkpoint:
        raise ValueError(f"{src} has no 'state_dict': it holds {sorted(checkpoint)}. "
                         'Publish the checkpoint of a training run.')
    state_dict = OrderedDict(checkpoint['state_dict'])
    has_ema = 'ema_state_dict' in checkpoint
    if ema and not has_ema:
        raise ValueError(f"{src} has no EMA weights ('ema_state_dict'): it was not trained with "
                         "EMAHook. Publish it without --ema.")
    if has_ema and not ema:
        state_dict.update((key[len('module.'):], value)
                          for key, value in checkpoint['ema_state_dict'].items()
                          if key.startswith('module.'))
    release = dict(state_dict=state_dict, meta=dict(checkpoint.get('meta', {}), ema=ema))
    os.makedirs(out_dir, exist_ok=True)
    date = date or datetime.date.today()
    with temporary_path(out_dir, f'.{name}.', '.pth') as tmp:
        torch.save(release, tmp)
        sha256 = file_sha256(tmp)
        path = osp.join(out_dir, f'{name}_{date:%Y%m%d}-{sha256[:8]}.pth')
        os.replace(tmp, path)
    return path, sha256
