"""mmengine's checkpoint schemes, made safe: every checkpoint mmengine loads after
``import mmxformer`` is unpickled with ``weights_only=True``, and every one that comes from a URL
is first a verified download into mmxformer's cache.

mmengine resolves every checkpoint path through ``CheckpointLoader``: ``init_cfg=dict(
type='Pretrained', ...)``, ``load_from``, ``resume``, ``mmengine.runner.load_checkpoint`` and so
the toolboxes' own APIs (mmpretrain ``get_model(pretrained=...)``, mmdet ``init_detector``, mmseg
``init_model``). Its own loaders unpickle with torch's default ``weights_only`` (which an
environment variable turns off) and download through ``torch.hub.load_state_dict_from_url``,
which unpickles with ``weights_only=False`` and keeps unverified files in torch's cache.
:func:`install_checkpoint_loaders` replaces each of them, with the same prefixes and the same
names (mmengine logs ``Loads checkpoint by <name> backend``). The tables of model URLs are read
from mmengine's module at each call, as its own loaders do; a name they lack is one line that says
where the table is and which names are close.
"""
import contextlib
import difflib
import io
import os
import os.path as osp
import sys
import tempfile

import torch
from mmengine.dist import get_dist_info
from mmengine.runner import checkpoint as mmengine_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader

from .download import download_checkpoint
from .safe_load import NotACheckpointError, load_checkpoint_safely


def load_from_local(filename, map_location=None):
    """A local checkpoint file, loaded with :func:`load_checkpoint_safely`.

    Raises:
        FileNotFoundError: There is no such file.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return load_checkpoint_safely(filename, map_location)


def load_from_http(filename, map_location=None):
    """An http(s) checkpoint: :func:`download_checkpoint` (verified, into mmxformer's cache),
    then :func:`load_checkpoint_safely`. As mmengine's, only local rank 0 downloads; the others
    wait, then find the verified file in the cache.

    An https URL needs no hash (its SHA-256 is printed, to pin it); plain http needs the full
    one (``#sha256=<hex>`` after the URL).

    Raises:
        ValueError: Plain http without the full SHA-256.
        DownloadError: The download failed or was refused; nothing was cached.
        NotACheckpointError: The file is no checkpoint (e.g. a web page); it is removed from
            the cache.
    """
    rank, world_size = get_dist_info()
    if rank == 0:
        path = download_checkpoint(filename, progress=sys.stderr.isatty())
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            path = download_checkpoint(filename, progress=False)
    try:
        return load_checkpoint_safely(path, map_location, source=filename)
    except NotACheckpointError:
        # A page served instead of the file (a sign-in form, a rate limit) would be loaded from
        # the cache again and again: the next try downloads afresh.
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
        raise


def load_from_torchvision(filename, map_location=None):
    """``torchvision://NAME`` (or the deprecated ``modelzoo://NAME``): torchvision's URL.

    Raises:
        ValueError: ``NAME`` is not in mmengine's table of torchvision's weights.
        ImportError: torchvision is not installed.
    """
    try:
        table = mmengine_checkpoint.get_torchvision_models()
    except ImportError:
        raise ImportError(f'{filename} needs torchvision, to know its weights: install it '
                          "(pip install torchvision), or give the checkpoint's URL") from None
    url = model_location(
        filename, table, "mmengine's table of torchvision's weights (mmengine/hub/"
        'torchvision_0.12.json and torchvision.models.list_models())')
    return load_from_http(url, map_location)


def load_from_openmmlab(filename, map_location=None):
    """``open-mmlab://NAME`` (or ``openmmlab://NAME``): the URL, or the file under mmengine's
    home, that mmengine's table gives.

    Raises:
        ValueError: ``NAME`` is not in mmengine's table.
    """
    prefix, name = filename.split('://', 1)
    name = mmengine_checkpoint.get_deprecated_model_names().get(name, name)
    location = model_location(
        f'{prefix}://{name}', mmengine_checkpoint.get_external_models(),
        "mmengine's table of OpenMMLab weights (mmengine/hub/openmmlab.json, and "
        f'{osp.join(mmengine_checkpoint._get_mmengine_home(), "open_mmlab.json")} if it exists)')
    if location.startswith(('http://', 'https://')):
        return load_from_http(location, map_location)
    return load_from_local(
        osp.join(mmengine_checkpoint._get_mmengine_home(), location), map_location)


def load_from_mmcls(filename, map_location=None):
    """``mmcls://NAME``: the URL of mmengine's table, keys converted as mmengine does.

    Raises:
        ValueError: ``NAME`` is not in mmengine's table.
    """
    url = model_location(filename, mmengine_checkpoint.get_mmcls_models(),
                         "mmengine's table of mmcls weights (mmengine/hub/mmcls.json)")
    return mmengine_checkpoint._process_mmcls_checkpoint(load_from_http(url, map_location))


def model_location(filename: str, table: dict, where: str) -> str:
    """The URL (or file) that ``table`` gives for the name of ``filename`` (``PREFIX://NAME``).

    Args:
        filename (str): The checkpoint as given, e.g. ``'open-mmlab://resnet50_caffe'``.
        table (dict): mmengine's table of names for the prefix.
        where (str): Where the table is, for the message.

    Raises:
        ValueError: The name is not in the table.
    """
    prefix, name = filename.split('://', 1)
    if name in table:
        return table[name]
    close = difflib.get_close_matches(name, list(table), n=3)
    hint = f'did you mean {", ".join(f"{prefix}://{match}" for match in close)}? ' if close else ''
    raise ValueError(f'Unknown checkpoint {filename}: {hint}{len(table)} names are in {where}; '
                     'use one of them, or give the checkpoint\'s URL or file instead')


def load_from_ceph(filename, map_location=None, backend='petrel'):
    """``s3://`` or ``petrel://``: the bytes from mmengine's file backend, loaded safely."""
    file_backend = mmengine_checkpoint.get_file_backend(filename, backend_args={'backend': backend})
    with io.BytesIO(file_backend.get(filename)) as buffer:
        return load_checkpoint_safely(buffer, map_location, source=filename)


def load_from_pavi(filename, map_location=None):
    """``pavi://``: downloaded by pavi's model cloud into a temporary directory, loaded safely.

    Raises:
        ImportError: pavi is not installed.
    """
    try:
        from pavi import modelcloud
    except ImportError:
        raise ImportError('Please install pavi to load checkpoint from modelcloud.') from None
    model = modelcloud.get(filename[len('pavi://'):])
    with tempfile.TemporaryDirectory() as tmp_dir:
        downloaded = osp.join(tmp_dir, model.name)
        model.download(downloaded)
        return load_checkpoint_safely(downloaded, map_location, source=filename)


#: mmengine's prefixes (as it registers them) and mmxformer's loader for each.
SCHEMES = (
    ('', load_from_local),
    (('http://', 'https://'), load_from_http),
    (('modelzoo://', 'torchvision://'), load_from_torchvision),
    (('open-mmlab://', 'openmmlab://'), load_from_openmmlab),
    ('mmcls://', load_from_mmcls),
    ([r'(\S+\:)?s3://', r'(\S+\:)?petrel://'], load_from_ceph),
    ('pavi://', load_from_pavi),
)


def install_checkpoint_loaders():
    """Register :data:`SCHEMES` in mmengine's ``CheckpointLoader`` in place of its own loaders
    (idempotent). Run by ``import mmxformer``."""
    for prefixes, loader in SCHEMES:
        CheckpointLoader.register_scheme(prefixes, loader, force=True)
