"""Verified checkpoint downloads.

A download goes to a temporary file in the cache directory and gets its final name only once its
SHA-256 matches, so the cache never holds a partial or unverified file: on an HTTP error, a
timeout, a truncated body or a wrong hash nothing is left behind. A cached file is checked again
before each use and reused without the network.

The cache is ``$MMXFORMER_HOME/checkpoints``, by default ``~/.cache/mmxformer/checkpoints``.
"""
import hashlib
import http.client
import os
import os.path as osp
import re
import urllib.error
import urllib.request
import warnings
from urllib.parse import unquote, urlparse

from rich.console import Console
from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                           TransferSpeedColumn)

from ..utils.fileio import CHUNK_SIZE, file_sha256, temporary_path
from .model_index import resolve_model

# OpenMMLab names a released file <name>_<date>-<first 8 hex of its sha256>.pth.
HASH_SUFFIX = re.compile(r'-([0-9a-f]{8,64})\.[A-Za-z0-9]+$')
HEX = re.compile(r'^[0-9a-f]{8,64}$')


class DownloadError(RuntimeError):
    """A download failed (HTTP error, timeout, truncated body); nothing was cached."""


class ChecksumError(DownloadError):
    """A downloaded file's SHA-256 is not the expected one; nothing was cached."""


def default_cache_dir():
    """``$MMXFORMER_HOME/checkpoints``, by default ``~/.cache/mmxformer/checkpoints``."""
    home = os.environ.get('MMXFORMER_HOME') or osp.join(
        os.environ.get('XDG_CACHE_HOME') or osp.join('~', '.cache'), 'mmxformer')
    return osp.join(osp.expanduser(home), 'checkpoints')


def download_checkpoint(name_or_url,
                        out_dir=None,
                        sha256=None,
                        progress=True,
                        timeout=30.,
                        index=None):
    """Download a checkpoint into the cache, verified, or reuse the verified cached file.

    Args:
        name_or_url (str): A model name of the index, or an http(s) URL.
        out_dir (str, optional): The cache directory. Defaults to :func:`default_cache_dir`.
        sha256 (str, optional): The expected SHA-256, or a prefix of at least 8 hex. Needed unless
            the index gives it or the file name ends with OpenMMLab's ``-<8 hex>.pth``.
        progress (bool): Show a progress bar on stderr. Defaults to True.
        timeout (float): Seconds to wait for the server, at the start and between reads.
            Defaults to 30.
        index (str, optional): The model index. Defaults to :func:`find_model_index`.

    Returns:
        str: The path of the verified file.

    Raises:
        DownloadError: HTTP error (e.g. 404), timeout or truncated body.
        ChecksumError: The file's SHA-256 is not the expected one.
        ValueError: Unknown model, bad hash argument, or no expected hash at all.
    """
    if urlparse(name_or_url).scheme in ('http', 'https'):
        url, index_sha256 = name_or_url, None
    else:
        url, index_sha256 = resolve_model(name_or_url, index)
    filename = osp.basename(unquote(urlparse(url).path))
    if not filename:
        raise ValueError(f'{url} does not end with a file name')
    expected = expected_sha256(filename, sha256, index_sha256)
    out_dir = out_dir or default_cache_dir()
    path = osp.join(out_dir, filename)
    if osp.isfile(path):
        if file_sha256(path).startswith(expected):
            return path
        warnings.warn(f'{path} does not have the expected SHA-256 {expected}: downloading it again')
    os.makedirs(out_dir, exist_ok=True)
    with temporary_path(out_dir, f'.{filename}.', '.part') as tmp:
        with open(tmp, 'wb') as f:
            actual = _fetch(url, f, timeout, progress, filename)
        if not actual.startswith(expected):
            raise ChecksumError(f'{url}: SHA-256 {actual} does not start with the expected '
                                f'{expected}; the file is corrupt or not the one published, '
                                'and was not kept')
        os.replace(tmp, path)
    return path


def expected_sha256(filename, *hashes):
    """The longest of the expected hashes: those given (None skipped) and the ``-<hex>`` suffix
    of ``filename``. They must agree (one a prefix of the other).

    Raises:
        ValueError: A hash that is not hex, hashes that disagree, or no hash at all.
    """
    known = []
    for value in hashes:
        if value is None:
            continue
        value = value.lower()
        if not HEX.match(value):
            raise ValueError(f'A SHA-256 is 8 to 64 hex digits, got {value!r}')
        known.append(value)
    match = HASH_SUFFIX.search(filename)
    if match:
        known.append(match.group(1))
    if not known:
        raise ValueError(f'No expected SHA-256 for {filename}: pass sha256 (--sha256), or '
                         "download a file named like OpenMMLab's <name>-<8 hex of sha256>.pth")
    longest = max(known, key=len)
    for value in known:
        if not longest.startswith(value):
            raise ValueError(f'The expected SHA-256 of {filename} disagree: {sorted(set(known))}')
    return longest


def _fetch(url, file, timeout, progress, description):
    """Stream ``url`` into ``file``; returns its SHA-256."""
    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except urllib.error.HTTPError as error:
        hint = ': check the model name or URL' if error.code == 404 else ''
        raise DownloadError(f'{url}: HTTP {error.code} {error.reason}{hint}') from None
    except urllib.error.URLError as error:
        if isinstance(error.reason, TimeoutError):
            raise _timeout(url, timeout, 0) from None
        raise DownloadError(f'Cannot reach {url}: {error.reason}') from None
    except TimeoutError:
        raise _timeout(url, timeout, 0) from None
    digest = hashlib.sha256()
    received = 0
    with response, _progress_bar(progress) as bar:
        length = response.headers.get('Content-Length')
        total = int(length) if length and length.isdigit() else None
        task = bar.add_task(description, total=total)
        while True:
            try:
                chunk = response.read1(CHUNK_SIZE)
            except TimeoutError:
                raise _timeout(url, timeout, received) from None
            except http.client.IncompleteRead as error:
                raise _truncated(url, received + len(error.partial), total) from None
            except OSError as error:
                raise DownloadError(f'{url}: the connection failed after {received} bytes: '
                                    f'{error}') from None
            if not chunk:
                break
            file.write(chunk)
            digest.update(chunk)
            received += len(chunk)
            bar.update(task, advance=len(chunk))
    if total is not None and received != total:
        raise _truncated(url, received, total)
    return digest.hexdigest()


def _timeout(url, timeout, received):
    return DownloadError(f'{url}: timed out, no data for {timeout} s after {received} bytes; '
                         'try again or raise the timeout')


def _truncated(url, received, total):
    announced = f'the {total} bytes announced (Content-Length)' if total else 'the body'
    return DownloadError(f'{url}: truncated body, {received} bytes of {announced} arrived '
                         'before the connection closed; try again')


def _progress_bar(enabled):
    return Progress(
        TextColumn('{task.description}'),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled)
