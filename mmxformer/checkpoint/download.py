"""Verified checkpoint downloads.

The transfer itself is :func:`torch.hub.download_url_to_file`'s: a ``.partial`` file, a progress
bar, the SHA-256 check, the move to its destination. mmxformer adds what it lacks:

- a timeout, at the connection and between reads (torch waits forever), an overall deadline (a
  server that sends a byte now and then never trips the timeout) and a size cap (an endless body
  would fill the disk): ``deadline`` and ``max_size``, by default ``$MMXFORMER_DOWNLOAD_DEADLINE``
  seconds (30 min) and ``$MMXFORMER_DOWNLOAD_MAX_SIZE`` bytes (2 GiB); a ``Content-Length`` above
  the cap is refused before anything is read;
- a truncation check: a body shorter than its ``Content-Length`` is an error (torch keeps it);
- a full SHA-256 wherever plain http is involved, and redirects only to https (http only with the
  full hash): torch follows any redirect urllib allows, ftp included;
- the move into the cache only after the check, so that the cache never holds a partial or
  unverified file: on an HTTP error, a timeout, a truncated body or a wrong hash nothing is left
  behind. What a killed download leaves (its temporary files carry host and pid) is removed by
  the next download into the same cache. A cached file is checked again before each use and
  reused without the network.

The expected SHA-256 comes from the ``sha256`` argument, the model index (by name, or by the URL
of an entry's ``Weights``), a ``#sha256=<hex>`` fragment of the URL (the form pip uses; it works
wherever a URL is the only thing a config can give, e.g. ``init_cfg=dict(type='Pretrained',
checkpoint=URL)``), or OpenMMLab's ``<name>-<8 hex of the sha256>.pth`` file names. 8 hex digits
are 32 bits, which anyone on the path can forge, so they are enough only over https.

An https URL with no expected hash at all is loaded as ``torch.hub`` loads one: the server's
certificate verified (Python's default SSL context: the system's CAs, or ``SSL_CERT_FILE``), the
file's SHA-256 printed on stderr so that it can be pinned with ``#sha256=``; it is reused from the
cache only for the same URL and while its SHA-256 is the one recorded then. Plain http always
needs the full hash. What the file may hold is the safe loader's business
(:mod:`mmxformer.checkpoint.safe_load`: ``weights_only``, whatever the source).

The cache is ``$MMXFORMER_HOME/checkpoints``, by default ``~/.cache/mmxformer/checkpoints``.
"""
import contextlib
import glob
import http.client
import os
import os.path as osp
import re
import socket
import ssl
import sys
import threading
import urllib.error
import urllib.request
import warnings
from typing import List, NamedTuple, Optional
from urllib.parse import unquote, urldefrag, urljoin, urlparse

import torch.hub

from ..utils.fileio import file_sha256, process_is_running, temporary_path, write_text_atomically
from .model_index import load_model_index, resolve_model

# OpenMMLab names a released file <name>_<date>-<first 8 hex of its sha256>.pth.
HASH_SUFFIX = re.compile(r'-([0-9a-f]{8,64})\.[A-Za-z0-9]+$')
HASH_FRAGMENT = re.compile(r'^sha256=(.*)$')
HEX = re.compile(r'^[0-9a-f]{8,64}$')
FULL_SHA256_LENGTH = 64

DEADLINE_ENV = 'MMXFORMER_DOWNLOAD_DEADLINE'
MAX_SIZE_ENV = 'MMXFORMER_DOWNLOAD_MAX_SIZE'
DEFAULT_DEADLINE = 30 * 60.
DEFAULT_MAX_SIZE = 2 << 30

# A download's temporary files: ``.<file>.<host>.<pid>.<random>.part`` (ours) and torch's
# ``<ours>.<uuid hex>.partial`` next to it. Host and pid tell the next download whether the
# process that made them still runs.
HOST = re.sub(r'[^A-Za-z0-9_-]', '_', socket.gethostname())
TEMPORARY = re.compile(rf'\..+\.{re.escape(HOST)}\.(\d+)\.[a-z0-9_]+\.part(\.[0-9a-f]+\.partial)?')
# Next to a file downloaded without an expected hash: the URL it came from and its SHA-256.
SOURCE_SUFFIX = '.source'

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
                        index: Optional[str] = None,
                        deadline: Optional[float] = None,
                        max_size: Optional[int] = None) -> str:
    """Download a checkpoint into the cache, verified, or reuse the verified cached file.

    Args:
        name_or_url (str): A model name of the index, or an http(s) URL, optionally ending with
            ``#sha256=<hex>``.
        out_dir (str, optional): The cache directory. Defaults to :func:`default_cache_dir`.
        sha256 (str, optional): The expected SHA-256, or over https a prefix of at least 8 hex.
            Over plain http the full hash is needed, from here, the index or the URL. Over https
            without any, the file's SHA-256 is printed on stderr, to pin it.
        progress (bool): Show a progress bar on stderr. Defaults to True.
        timeout (float): Seconds to wait for the server, at the start and between reads.
            Defaults to 30.
        index (str, optional): The model index. Defaults to :func:`find_model_index`.
        deadline (float, optional): Seconds the whole download may take; its connection is shut
            down then. Defaults to ``$MMXFORMER_DOWNLOAD_DEADLINE``, else 1800.
        max_size (int, optional): The most bytes the file may have. Defaults to
            ``$MMXFORMER_DOWNLOAD_MAX_SIZE``, else 2 GiB.

    Returns:
        str: The path of the verified file.

    Raises:
        DownloadError: HTTP error (e.g. 404), untrusted TLS certificate, timeout, deadline or size
            cap passed, truncated body, a redirect to another scheme than https (or http, where
            the full SHA-256 is known), or a cache that cannot be written.
        ChecksumError: The file's SHA-256 is not the expected one.
        ValueError: Unknown model, bad hash or limit, plain http without the full SHA-256, or a
            cache directory that is a file.
    """
    try:
        scheme = urlparse(name_or_url).scheme
    except ValueError as error:  # e.g. an unclosed [ of an IPv6 address
        raise ValueError(f'{name_or_url} is not a valid URL: {error}') from None
    if scheme in ('http', 'https'):
        url, fragment = urldefrag(name_or_url)
        hashes = (sha256, _fragment_sha256(name_or_url, fragment), _index_sha256(url, index))
    else:
        url, index_sha256 = resolve_model(name_or_url, index)
        hashes = (sha256, index_sha256)
    filename = osp.basename(unquote(urlparse(url).path))
    # '.', '..' and hidden names would be the cache directory, its parent, or like the cache's
    # own temporary files; a NUL byte is no file name at all.
    if not filename or filename.startswith('.') or '\0' in filename:
        raise ValueError(f'{url} does not end with a file name to save it under '
                         f'(got {filename!r})')
    expected = expected_sha256(filename, *hashes)
    full_hash = expected is not None and len(expected) == FULL_SHA256_LENGTH
    check_scheme(url, full_hash)
    limits = _Limits(timeout, _limit(deadline, 'deadline', DEADLINE_ENV, DEFAULT_DEADLINE, float),
                     _limit(max_size, 'max_size', MAX_SIZE_ENV, DEFAULT_MAX_SIZE, int))
    out_dir = out_dir or default_cache_dir()
    _check_cache_dir(out_dir)
    remove_stale_downloads(out_dir)
    path = osp.join(out_dir, filename)
    if osp.isfile(path) and expected is not None:
        if file_sha256(path).startswith(expected):
            return path
        warnings.warn(f'{path} does not have the expected SHA-256 {expected}: downloading it again')
    elif osp.isfile(path):
        recorded = _recorded_sha256(path, url)
        if recorded is not None and file_sha256(path) == recorded:
            return path
    try:
        os.makedirs(out_dir, exist_ok=True)
        with temporary_path(out_dir, f'.{filename}.{HOST}.{os.getpid()}.', '.part') as tmp:
            _fetch(url, tmp, expected, full_hash, limits, progress)
            actual = file_sha256(tmp) if expected is None else None
            # os.replace renames over a symlink in the cache; it never writes through it
            os.replace(tmp, path)
        if actual is not None:
            write_text_atomically(_source_path(path), f'{url}\n{actual}\n')
    except OSError as error:  # the network's are DownloadErrors: this is the disk's
        raise DownloadError(f'Cannot write {url} into the checkpoint cache {out_dir}: {error}; '
                            'make room there, or choose another cache (MMXFORMER_HOME, out_dir, '
                            '--out)') from None
    if actual is not None:
        print(f'Downloaded {url} (sha256 {actual}); pin it with #sha256={actual}', file=sys.stderr)
    return path


def expected_sha256(filename, *hashes):
    """The longest of the expected hashes: those given (None skipped) and the ``-<hex>`` suffix
    of ``filename``. They must agree (one a prefix of the other).

    Returns:
        str | None: The hash, or None if none is known.

    Raises:
        ValueError: A hash that is not hex, or hashes that disagree.
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
        return None
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


def remove_stale_downloads(out_dir: str) -> List[str]:
    """Remove the temporary files that downloads of this host into ``out_dir`` left when they
    were killed (a SIGKILLed process cannot clean up). Those of processes that still run, and
    of other hosts sharing the directory, are left alone.

    Args:
        out_dir (str): A checkpoint cache directory (missing: nothing to do).

    Returns:
        list[str]: The paths removed.
    """
    removed = []
    names = os.listdir(out_dir) if osp.isdir(out_dir) else []
    for name in names:
        match = TEMPORARY.fullmatch(name)
        if not match or process_is_running(int(match.group(1))):
            continue
        try:
            os.remove(osp.join(out_dir, name))
        except OSError:  # removed by another process already, or a cache we may not change
            continue
        removed.append(osp.join(out_dir, name))
    return removed


def _check_cache_dir(out_dir):
    """Raise if ``out_dir``, or the first of its parents that exists, is not a directory."""
    existing = out_dir
    while not osp.exists(existing) and osp.dirname(existing) != existing:
        existing = osp.dirname(existing)
    if osp.exists(existing) and not osp.isdir(existing):
        raise ValueError(f'The checkpoint cache {out_dir}: {existing} is a file, not a directory; '
                         'point MMXFORMER_HOME (or out_dir, --out) at a directory')


def _limit(value, name, env, default, kind):
    """``value``, else the environment variable ``env``, else ``default``: a positive number."""
    given = value if value is not None else os.environ.get(env) or None
    if given is None:
        return default
    try:
        number = kind(float(given))  # '1e9' bytes too
    except (TypeError, ValueError, OverflowError):
        number = None
    if number is None or not number > 0:
        unit = 'seconds' if kind is float else 'bytes'
        raise ValueError(f'{name if value is not None else env} must be a positive number of '
                         f'{unit}, got {given!r}')
    return number


def _source_path(path):
    return osp.join(osp.dirname(path), f'.{osp.basename(path)}{SOURCE_SUFFIX}')


def _recorded_sha256(path, url):
    """The SHA-256 recorded for ``path`` when it was downloaded from ``url`` without an expected
    hash; None if it came from elsewhere (another URL with the same file name, a pinned one)."""
    try:
        with open(_source_path(path), encoding='utf-8') as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    return lines[1] if len(lines) == 2 and lines[0] == url else None


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


class _Limits(NamedTuple):
    timeout: float  # seconds, at the connection and between reads
    deadline: float  # seconds, the whole download
    max_size: int  # bytes


def _fetch(url, dst, expected, full_hash, limits, progress):
    """Download ``url`` to ``dst`` through :func:`torch.hub.download_url_to_file`."""
    with _Deadline(limits.deadline) as deadline:
        opener = urllib.request.build_opener(
            _CheckedRedirects(full_hash), deadline.handler(urllib.request.HTTPHandler),
            deadline.handler(urllib.request.HTTPSHandler))
        try:
            with _torch_hub_urlopen(lambda request: _open(opener, request, limits, deadline)):
                torch.hub.download_url_to_file(url, dst, hash_prefix=expected, progress=progress)
        except DownloadError:
            raise
        except RuntimeError as error:  # the only RuntimeError torch raises there: a wrong hash
            raise ChecksumError(f'{url}: {error}; the file is corrupt or not the one published, '
                                'and was not kept') from None
        finally:
            # torch.hub removes its ``<dst>.<uuid>.partial`` after closing it; where the close
            # fails too (the flush, on a full disk), the removal never runs (seen on torch 2.1).
            for partial in glob.glob(glob.escape(dst) + '.*.partial'):
                os.remove(partial)


class _Deadline:
    """The end of a download: its connections are shut down then, whatever they wait for. A
    server that sends a byte now and then, in the headers or the body, never trips the timeout
    between reads (the TLS handshake is bounded by it as a whole)."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.passed = False
        self._connections = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._pass)
        self._timer.daemon = True

    def __enter__(self):
        self._timer.start()
        return self

    def __exit__(self, *exc_info):
        self._timer.cancel()

    def handler(self, handler_class):
        """An instance of urllib's ``handler_class`` whose connections are watched."""
        deadline = self

        class Handler(handler_class):

            def do_open(self, http_class, request, **kwargs):
                return super().do_open(deadline._connection_class(http_class), request, **kwargs)

        return Handler()

    def error(self, url, received):
        return DownloadError(
            f'{url}: not complete after {self.seconds:g} s ({received} bytes), the deadline; '
            f'stopped and removed. Try again, or raise the deadline (deadline=, --deadline, '
            f'{DEADLINE_ENV})')

    def _connection_class(self, http_class):
        deadline = self

        class Connection(http_class):

            def connect(self):
                super().connect()
                deadline._watch(self)

        return Connection

    def _watch(self, connection):
        with self._lock:
            self._connections.append(connection)
        if self.passed:
            self._pass()

    def _pass(self):
        with self._lock:
            self.passed = True
            for connection in self._connections:
                with contextlib.suppress(AttributeError, OSError):  # closed already
                    connection.sock.shutdown(socket.SHUT_RDWR)


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


def _open(opener, request, limits, deadline):
    """Open torch's ``request`` with ``opener`` and a timeout; name failures."""
    try:
        response = _open_response(opener, request, limits.timeout)
    except DownloadError:
        if deadline.passed:  # the connection was shut down
            raise deadline.error(request.full_url, 0) from None
        raise
    return _CheckedResponse(response, request.full_url, limits, deadline)


def _open_response(opener, request, timeout):
    url = request.full_url
    try:
        return opener.open(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        hint = ': check the model name or URL' if error.code == 404 else ''
        raise DownloadError(f'{error.url}: HTTP {error.code} {error.reason}{hint}') from None
    except urllib.error.URLError as error:
        if isinstance(error.reason, TimeoutError):
            raise _timeout(url, timeout, 0) from None
        if isinstance(error.reason, ssl.SSLCertVerificationError):
            raise DownloadError(
                f'{url}: the server\'s TLS certificate is not trusted '
                f'({error.reason.verify_message}), nothing was downloaded; if the server is '
                'yours, add its CA certificate to the system\'s or name it in SSL_CERT_FILE'
            ) from None
        raise DownloadError(f'Cannot reach {url}: {error.reason}') from None
    except TimeoutError:
        raise _timeout(url, timeout, 0) from None
    except http.client.InvalidURL as error:
        raise ValueError(f'{url} is not a valid URL: {error}') from None
    except http.client.HTTPException as error:  # not an HTTP answer: urllib passes them on
        raise DownloadError(f'{url}: the server\'s answer is not HTTP '
                            f'({type(error).__name__}: {error})') from None


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
    """The response as torch reads it, which raises on a timeout between reads, at the deadline,
    past the size cap, and on a body that ends before its Content-Length."""

    def __init__(self, response, url, limits, deadline):
        self.response = response
        self.url = url
        self.limits = limits
        self.deadline = deadline
        length = response.headers.get('Content-Length', '').strip()
        self.total = int(length) if length.isdigit() else None
        # torch reads the header itself, with int(): give it the number or nothing
        del response.headers['Content-Length']
        if self.total is not None:
            response.headers['Content-Length'] = str(self.total)
        self.received = 0
        if self.total is not None and self.total > limits.max_size:
            response.close()
            raise DownloadError(
                f'{url}: the server announces {self.total} bytes (Content-Length), more than '
                f'the limit of {limits.max_size}; nothing was downloaded. If the file is that '
                f'large, raise the limit (max_size=, --max-size, {MAX_SIZE_ENV})')

    def info(self):
        return self.response.info()

    def read(self, size):
        try:
            chunk = self._read(size)
        except DownloadError:
            if self.deadline.passed:  # the connection was shut down
                raise self.deadline.error(self.url, self.received) from None
            raise
        if self.deadline.passed:  # shut down: the end of the body is no end of the file
            raise self.deadline.error(self.url, self.received)
        self.received += len(chunk)
        if not chunk and self.total is not None and self.received != self.total:
            raise _truncated(self.url, self.received, self.total)
        if self.received > self.limits.max_size:
            raise DownloadError(
                f'{self.url}: more than {self.limits.max_size} bytes arrived, the limit; '
                f'stopped and removed. If the file is that large, raise the limit (max_size=, '
                f'--max-size, {MAX_SIZE_ENV})')
        return chunk

    def _read(self, size):
        try:  # read1: what has arrived, so that the bytes received are known at a timeout
            return self.response.read1(size)
        except TimeoutError:
            raise _timeout(self.url, self.limits.timeout, self.received) from None
        except http.client.IncompleteRead as error:
            raise _truncated(self.url, self.received + len(error.partial), self.total) from None
        except OSError as error:
            raise DownloadError(f'{self.url}: the connection failed after {self.received} '
                                f'bytes: {error}') from None
        except (http.client.HTTPException, ValueError) as error:  # e.g. a bad chunk size
            raise DownloadError(f'{self.url}: the body is malformed after {self.received} bytes '
                                f'({type(error).__name__}: {error})') from None

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
