"""Verified checkpoint downloads.

The transfer itself is :func:`torch.hub.download_url_to_file`'s: a ``.partial`` file, a progress
bar, the SHA-256 check, the move to its destination. mmxformer adds what it lacks:

- a timeout, at the connection and between reads (torch waits forever);
- a truncation check: a body shorter than its ``Content-Length`` is an error (torch keeps it);
- a full SHA-256 wherever plain http is involved, and redirects only to https (http only with the
  full hash): torch follows any redirect urllib allows, ftp included;
- the move into the cache only after the check, so that the cache never holds a partial or
  unverified file: on an HTTP error, a timeout, a truncated body or a wrong hash nothing is left
  behind. A cached file is checked again before each use and reused without the network.

The expected SHA-256 comes from the ``sha256`` argument, the model index (by name, or by the URL
of an entry's ``Weights``), a ``#sha256=<hex>`` fragment of the URL (the form pip uses; it works
wherever a URL is the only thing a config can give, e.g. ``init_cfg=dict(type='Pretrained',
checkpoint=URL)``), or OpenMMLab's ``<name>-<8 hex of the sha256>.pth`` file names. 8 hex digits
are 32 bits, which anyone on the path can forge, so they are enough only over https.

The cache is ``$MMXFORMER_HOME/checkpoints``, by default ``~/.cache/mmxformer/checkpoints``.
"""
import contextlib
import http.client
import os
import os.path as osp
import re
import threading
import urllib.error
import urllib.request
import warnings
from typing import Optional
from urllib.parse import unquote, urldefrag, urljoin, urlparse

import torch.hub

from ..utils.fileio import file_sha256, temporary_path
from .model_index import load_model_index, resolve_model

# OpenMMLab names a released file <name>_<date>-<first 8 hex of its sha256>.pth.
HASH_SUFFIX = re.compile(r'-([0-9a-f]{8,64})\.[A-Za-z0-9]+$')
HASH_FRAGMENT = re.compile(r'^sha256=(.*)$')
HEX = re.compile(r'^[0-9a-f]{8,64}$')
FULL_SHA256_LENGTH = 64

# torch.hub.download_url_to_file opens URLs through its module's ``urlopen``, which it does not
# let a caller replace: _fetch swaps it for the duration of a download (see _torch_hub_urlopen),
# and this lock keeps two downloads of this process from swapping it at the same time.
_TORCH_HUB_LOCK = threading.Lock()


class DownloadError(RuntimeError):
    """A download failed (HTTP error, timeout, truncated body, refused redirect); nothing was
    cached."""


class ChecksumError(DownloadError):
    """A downloaded file's SHA-256 is not the expected one; nothing was cached."""


def default_cache_dir() -> str:
    """``$MMXFORMER_HOME/checkpoints``, by default ``~/.cache/mmxformer/checkpoints``."""
    home = os.environ.get('MMXFORMER_HOME') or osp.join(
        os.environ.get('XDG_CACHE_HOME') or osp.join('~', '.cache'), 'mmxformer')
    return osp.join(osp.expanduser(home), 'checkpoints')


def download_checkpoint(name_or_url: str,
                        out_dir: Optional[str] = None,
                        sha256: Optional[str] = None,
                        progress: bool = True,
                        timeout: float = 30.,
                        index: Optional[str] = None) -> str:
    """Download a checkpoint into the cache, verified, or reuse the verified cached file.

    Args:
        name_or_url (str): A model name of the index, or an http(s) URL, optionally ending with
            ``#sha256=<hex>``.
        out_dir (str, optional): The cache directory. Defaults to :func:`default_cache_dir`.
        sha256 (str, optional): The expected SHA-256, or over https a prefix of at least 8 hex.
            Needed unless the index or the URL gives it, or (https only) the file name ends with
            OpenMMLab's ``-<8 hex>.pth``.
        progress (bool): Show a progress bar on stderr. Defaults to True.
        timeout (float): Seconds to wait for the server, at the start and between reads.
            Defaults to 30.
        index (str, optional): The model index. Defaults to :func:`find_model_index`.

    Returns:
        str: The path of the verified file.

    Raises:
        DownloadError: HTTP error (e.g. 404), timeout, truncated body, or a redirect to another
            scheme than https (or http, where the full SHA-256 is known).
        ChecksumError: The file's SHA-256 is not the expected one.
        ValueError: Unknown model, bad hash argument, no expected hash at all, or plain http
            without the full SHA-256.
    """
    if urlparse(name_or_url).scheme in ('http', 'https'):
        url, fragment = urldefrag(name_or_url)
        hashes = (sha256, _fragment_sha256(name_or_url, fragment), _index_sha256(url, index))
    else:
        url, index_sha256 = resolve_model(name_or_url, index)
        hashes = (sha256, index_sha256)
    filename = osp.basename(unquote(urlparse(url).path))
    if not filename:
        raise ValueError(f'{url} does not end with a file name')
    expected = expected_sha256(filename, *hashes)
    full_hash = len(expected) == FULL_SHA256_LENGTH
    check_scheme(url, full_hash)
    out_dir = out_dir or default_cache_dir()
    path = osp.join(out_dir, filename)
    if osp.isfile(path):
        if file_sha256(path).startswith(expected):
            return path
        warnings.warn(f'{path} does not have the expected SHA-256 {expected}: downloading it again')
    os.makedirs(out_dir, exist_ok=True)
    with temporary_path(out_dir, f'.{filename}.', '.part') as tmp:
        _fetch(url, tmp, expected, full_hash, timeout, progress)
        # os.replace renames over a symlink in the cache; it never writes through it
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
        raise ValueError(f'No expected SHA-256 for {filename}: pass sha256 (--sha256), end the '
                         'URL with #sha256=<hex>, or download a file named like OpenMMLab\'s '
                         '<name>-<8 hex of sha256>.pth (https only)')
    longest = max(known, key=len)
    for value in known:
        if not longest.startswith(value):
            raise ValueError(f'The expected SHA-256 of {filename} disagree: {sorted(set(known))}')
    return longest


def check_scheme(url, full_hash, redirected_from=None):
    """Refuse a URL whose scheme cannot be trusted with what is known of the file's hash: https
    always passes, plain http only with the full SHA-256, anything else never.

    Args:
        url (str): The URL to be opened.
        full_hash (bool): Whether the full SHA-256 of the file is known.
        redirected_from (str, optional): The URL that redirected to ``url``, if any.

    Raises:
        ValueError: ``url`` itself (not a redirect) is refused.
        DownloadError: The redirect to ``url`` is refused.
    """
    scheme = urlparse(url).scheme
    if scheme == 'https' or (scheme == 'http' and full_hash):
        return
    if scheme == 'http':
        reason = ('over plain http the file can be swapped on the way, and an 8-hex '
                  '(32-bit) hash is easy to forge: give the full SHA-256 (64 hex digits; '
                  'sha256=, --sha256, the model index\'s SHA256, or #sha256=<hex> after the '
                  'URL) or use https')
    else:
        reason = 'only https (and http, with the full SHA-256) is allowed'
    if redirected_from is None:
        raise ValueError(f'Refused to download {url}: {reason}')
    raise DownloadError(f'{redirected_from} redirects to {url}, refused: {reason}')


def _fragment_sha256(url, fragment):
    if not fragment:
        return None
    match = HASH_FRAGMENT.match(fragment)
    if not match:
        raise ValueError(f'{url}: the only fragment a checkpoint URL may end with is '
                         f'#sha256=<hex>, got #{fragment}')
    return match.group(1)


def _index_sha256(url, index):
    """The SHA256 of the model index's entry whose ``Weights`` is ``url``, if any."""
    return next((entry.get('SHA256')
                 for entry in load_model_index(index).values() if entry.get('Weights') == url),
                None)


def _fetch(url, dst, expected, full_hash, timeout, progress):
    """Download ``url`` to ``dst`` through :func:`torch.hub.download_url_to_file`."""
    opener = urllib.request.build_opener(_CheckedRedirects(full_hash))
    try:
        with _torch_hub_urlopen(lambda request: _open(opener, request, timeout)):
            torch.hub.download_url_to_file(url, dst, hash_prefix=expected, progress=progress)
    except DownloadError:
        raise
    except RuntimeError as error:  # the only RuntimeError torch raises there: a wrong hash
        raise ChecksumError(f'{url}: {error}; the file is corrupt or not the one published, '
                            'and was not kept') from None


@contextlib.contextmanager
def _torch_hub_urlopen(urlopen):
    """Make torch.hub open URLs with ``urlopen`` inside the block.

    torch.hub.download_url_to_file takes no timeout, follows every redirect urllib allows and
    ignores a body shorter than its Content-Length (http.client returns it without complaint).
    A socket timeout set for the process, or redirects resolved beforehand, would hold only
    until the server answers the second request differently; replacing the one function torch
    opens URLs with enforces all three on the very request that brings the file. The name is
    looked up, not created: if a version of torch stops using it, this fails loudly. A torch.hub
    download of another thread during the block would go through ``urlopen`` too, under the
    same rules.
    """
    with _TORCH_HUB_LOCK:
        saved = torch.hub.urlopen
        torch.hub.urlopen = urlopen
        try:
            yield
        finally:
            torch.hub.urlopen = saved


def _open(opener, request, timeout):
    """Open torch's ``request`` with ``opener`` and a timeout; name failures."""
    url = request.full_url
    try:
        response = opener.open(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        hint = ': check the model name or URL' if error.code == 404 else ''
        raise DownloadError(f'{error.url}: HTTP {error.code} {error.reason}{hint}') from None
    except urllib.error.URLError as error:
        if isinstance(error.reason, TimeoutError):
            raise _timeout(url, timeout, 0) from None
        raise DownloadError(f'Cannot reach {url}: {error.reason}') from None
    except TimeoutError:
        raise _timeout(url, timeout, 0) from None
    return _CheckedResponse(response, url, timeout)


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to a scheme :func:`check_scheme` allows, checked on the absolute
    target before urllib's own checks (which let ftp through)."""

    def __init__(self, full_hash):
        self.full_hash = full_hash

    def http_error_302(self, req, fp, code, msg, headers):
        target = headers.get('location') or headers.get('uri')
        if target:
            check_scheme(urljoin(req.full_url, target), self.full_hash, req.full_url)
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


class _CheckedResponse:
    """The response as torch reads it, which raises on a timeout between reads and on a body
    that ends before its Content-Length."""

    def __init__(self, response, url, timeout):
        self.response = response
        self.url = url
        self.timeout = timeout
        length = response.headers.get('Content-Length')
        self.total = int(length) if length and length.isdigit() else None
        self.received = 0

    def info(self):
        return self.response.info()

    def read(self, size):
        try:  # read1: what has arrived, so that the bytes received are known at a timeout
            chunk = self.response.read1(size)
        except TimeoutError:
            raise _timeout(self.url, self.timeout, self.received) from None
        except http.client.IncompleteRead as error:
            raise _truncated(self.url, self.received + len(error.partial), self.total) from None
        except OSError as error:
            raise DownloadError(f'{self.url}: the connection failed after {self.received} '
                                f'bytes: {error}') from None
        self.received += len(chunk)
        if not chunk and self.total is not None and self.received != self.total:
            raise _truncated(self.url, self.received, self.total)
        return chunk

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.response.close()


def _timeout(url, timeout, received):
    return DownloadError(f'{url}: timed out, no data for {timeout} s after {received} bytes; '
                         'try again or raise the timeout')


def _truncated(url, received, total):
    announced = f'the {total} bytes announced (Content-Length)' if total else 'the body'
    return DownloadError(f'{url}: truncated body, {received} bytes of {announced} arrived '
                         'before the connection closed; try again')
