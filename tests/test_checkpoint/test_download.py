import hashlib
import http.server
import io
import os
import os.path as osp
import random
import re
import resource
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from urllib.parse import parse_qs, urlparse

import pytest
import torch
import torch.hub
from mmengine.runner.checkpoint import CheckpointLoader

from mmxformer.checkpoint import download, model_index
from mmxformer.checkpoint.download import ChecksumError, DownloadError, download_checkpoint
from mmxformer.checkpoint.safe_load import NotACheckpointError

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# more than one read of torch's; the same bytes in every process (the test ids hold their hash,
# and pytest-xdist's workers must collect the same tests)
BODY = random.Random(0).randbytes(3 * torch.hub.READ_DATA_CHUNK // 2)
SHA256 = hashlib.sha256(BODY).hexdigest()
OTHER_SHA256 = hashlib.sha256(b'something else').hexdigest()
TIMEOUT = 0.3


def _checkpoint_bytes():
    buffer = io.BytesIO()
    torch.save(dict(state_dict=dict(w=torch.arange(3.))), buffer)
    return buffer.getvalue()


CHECKPOINT = _checkpoint_bytes()
CHECKPOINT_SHA256 = hashlib.sha256(CHECKPOINT).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves each failure a download can meet. Names carry the hash suffix OpenMMLab uses."""

    def do_GET(self):
        self.server.requests[self.path] += 1
        name = re.match(r'/([a-z]*)', self.path).group(1)
        if name == 'redirect':  # /redirect?to=URL
            self.send_response(302)
            self.send_header('Location', parse_qs(urlparse(self.path).query)['to'][0])
            self.send_header('Content-Length', '0')
            self.end_headers()
        elif name == 'missing':
            self.send_error(404)
        elif name == 'slow':  # no response before the client's timeout
            self.server.release.wait(5)
        elif name in ('good', 'plain', 'corrupt'):
            self._send(BODY if name != 'corrupt' else BODY[::-1], len(BODY))
        elif name == 'truncated':  # the connection closes before Content-Length bytes
            self._send(BODY[:len(BODY) // 2], len(BODY))
            self.close_connection = True
        elif name == 'stall':  # half the body, then silence
            self._send(BODY[:len(BODY) // 2], len(BODY))
            self.server.release.wait(5)
        elif name == 'checkpoint':
            self._send(CHECKPOINT, len(CHECKPOINT))
        elif name == 'drip':  # a byte every 50 ms: the timeout between reads never fires
            self._send(b'', len(BODY))
            self._stream(b'x', 0.05)
        elif name == 'slowheaders':  # a header line that grows by a byte every 50 ms
            self.wfile.write(b'HTTP/1.1 200 OK\r\nX-Slow: ')
            self._stream(b'x', 0.05)
        elif name == 'endless':  # no Content-Length, a body that never ends
            self.send_response(200)
            self.end_headers()
            self.close_connection = True
            self._stream(bytes(64 << 10), 0)
        elif name == 'huge':  # announces a terabyte
            self.send_response(200)
            self.send_header('Content-Length', str(1 << 40))
            self.end_headers()
            self._stream(bytes(64 << 10), 0)
        elif name == 'empty':
            self._send(b'', 0)
        elif name == 'badlength':  # a Content-Length that is no number; the body ends at close
            self.send_response(200)
            self.send_header('Content-Length', 'many')
            self.end_headers()
            self.wfile.write(BODY)
            self.close_connection = True
        elif name == 'garbage':  # not HTTP at all
            self.wfile.write(b'SSH-2.0-OpenSSH_9.6\r\n\r\n')
            self.close_connection = True
        elif name == 'loop':  # redirects to itself
            self.send_response(302)
            self.send_header('Location', self.path)
            self.send_header('Content-Length', '0')
            self.end_headers()
        else:
            self.send_error(500)

    def _send(self, body, length):
        self.send_response(200)
        self.send_header('Content-Length', str(length))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _stream(self, chunk, interval):
        """Send ``chunk`` every ``interval`` seconds until the server stops or the client
        goes."""
        try:
            while not self.server.release.wait(interval):
                self.wfile.write(chunk)
                self.wfile.flush()
        except OSError:
            pass

    def log_message(self, *args):
        pass


class Server:
    """The handler on 127.0.0.1 in a thread; over https with ``context``."""

    def __init__(self, context=None):
        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        if context is not None:
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.scheme = 'http' if context is None else 'https'
        self.httpd.daemon_threads = True
        self.httpd.requests = Counter()
        self.httpd.release = threading.Event()
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs=dict(poll_interval=0.05), daemon=True)
        self.thread.start()
        self.running = True

    def url(self, name):
        return f'{self.scheme}://127.0.0.1:{self.httpd.server_address[1]}/{name}'

    @property
    def requests(self):
        return self.httpd.requests

    def stop(self):
        if self.running:
            self.httpd.release.set()
            self.httpd.shutdown()
            self.httpd.server_close()
            self.running = False


@pytest.fixture
def server():
    server = Server()
    yield server
    server.stop()


@pytest.fixture(scope='module')
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1: (server context, client context trusting it)."""
    directory = tmp_path_factory.mktemp('tls')
    cert, key = str(directory / 'cert.pem'), str(directory / 'key.pem')
    subprocess.run([
        'openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert,
        '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'
    ],
                   check=True,
                   capture_output=True)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    return server_context, cert


@pytest.fixture
def https_server(certificate, monkeypatch):
    """The same handler over https, trusted by urllib's default context for the test."""
    server_context, cert = certificate
    monkeypatch.setattr(ssl, '_create_default_https_context',
                        lambda: ssl.create_default_context(cafile=cert))
    server = Server(server_context)
    yield server
    server.stop()


@pytest.fixture
def cache(tmp_path):
    return str(tmp_path / 'cache')


def cached_files(cache):
    """Everything in the cache, hidden files (temporary, .partial) included."""
    return sorted(os.listdir(cache)) if osp.isdir(cache) else []


def test_good_download_is_verified_and_named(server, cache):
    url = server.url(f'good_20240517-{SHA256[:8]}.pth')
    path = download_checkpoint(url, out_dir=cache, sha256=SHA256, timeout=TIMEOUT)
    assert path == osp.join(cache, f'good_20240517-{SHA256[:8]}.pth')
    assert open(path, 'rb').read() == BODY
    assert cached_files(cache) == [osp.basename(path)]


def test_the_url_can_carry_the_full_hash(server, cache):
    path = download_checkpoint(
        server.url(f'plain.pth#sha256={SHA256}'), out_dir=cache, timeout=TIMEOUT)
    assert path == osp.join(cache, 'plain.pth') and open(path, 'rb').read() == BODY
    with pytest.raises(ChecksumError):
        download_checkpoint(
            server.url(f'corrupt.pth#sha256={SHA256}'), out_dir=cache, timeout=TIMEOUT)
    with pytest.raises(ValueError, match='#sha256=<hex>, got #md5=0'):
        download_checkpoint(server.url('plain.pth#md5=0'), out_dir=cache)
    assert cached_files(cache) == ['plain.pth']


def test_cached_file_is_reused_without_the_network(server, cache):
    url = server.url(f'good-{SHA256[:8]}.pth')
    path = download_checkpoint(url, out_dir=cache, sha256=SHA256, timeout=TIMEOUT, progress=True)
    server.stop()
    assert download_checkpoint(url, out_dir=cache, sha256=SHA256, timeout=TIMEOUT) == path
    assert server.requests[f'/good-{SHA256[:8]}.pth'] == 1
    # a file not in the cache needs the server, which is gone
    with pytest.raises(DownloadError, match='Cannot reach'):
        download_checkpoint(server.url('plain.pth'), out_dir=cache, sha256=SHA256, timeout=TIMEOUT)
    assert cached_files(cache) == [osp.basename(path)]


def test_tampered_cached_file_is_downloaded_again(server, cache):
    url = server.url('plain.pth')
    path = download_checkpoint(url, out_dir=cache, sha256=SHA256, timeout=TIMEOUT)
    with open(path, 'wb') as f:
        f.write(b'tampered')
    with pytest.warns(UserWarning, match='expected SHA-256'):
        assert download_checkpoint(url, out_dir=cache, sha256=SHA256, timeout=TIMEOUT) == path
    assert open(path, 'rb').read() == BODY and server.requests['/plain.pth'] == 2


def test_a_symlink_in_the_cache_is_replaced_not_written_through(server, tmp_path):
    cache = tmp_path / 'cache'
    (tmp_path / 'real_cache').mkdir()
    cache.symlink_to(tmp_path / 'real_cache')  # a cache directory that is a symlink works
    user_file = tmp_path / 'notes.txt'
    user_file.write_bytes(b'my notes')
    (cache / 'plain.pth').symlink_to(user_file)  # a wrong cached file that is a symlink
    with pytest.warns(UserWarning, match='expected SHA-256'):
        path = download_checkpoint(
            server.url('plain.pth'), out_dir=str(cache), sha256=SHA256, timeout=TIMEOUT)
    assert user_file.read_bytes() == b'my notes'
    assert not osp.islink(path) and open(path, 'rb').read() == BODY
    assert os.listdir(tmp_path / 'real_cache') == ['plain.pth']


@pytest.mark.parametrize('name,sha256,error,match', [
    ('missing.pth', SHA256, DownloadError, 'HTTP 404'),
    ('slow.pth', SHA256, DownloadError, 'timed out.* after 0 bytes'),
    ('stall.pth', SHA256, DownloadError, 'timed out.* after [1-9]'),
    ('truncated.pth', SHA256, DownloadError, rf'truncated body, {len(BODY) // 2} bytes of '
     rf'the {len(BODY)} bytes'),
    ('corrupt.pth', SHA256, ChecksumError, f'expected "{SHA256}"'),
    ('plain.pth', OTHER_SHA256, ChecksumError, f'expected "{OTHER_SHA256}"'),
])
def test_failures_leave_nothing_in_the_cache(server, cache, name, sha256, error, match):
    with pytest.raises(error, match=match):
        download_checkpoint(server.url(name), out_dir=cache, sha256=sha256, timeout=TIMEOUT)
    assert cached_files(cache) == []


def test_expected_hashes_must_be_consistent(server, cache):
    with pytest.raises(ValueError, match='Refused to download http://.*full SHA-256'):
        download_checkpoint(server.url('plain.pth'), out_dir=cache)
    with pytest.raises(ValueError, match='disagree'):
        download_checkpoint(
            server.url(f'good-{SHA256[:8]}.pth'), out_dir=cache, sha256=OTHER_SHA256)
    with pytest.raises(ValueError, match='8 to 64 hex'):
        download_checkpoint(server.url('plain.pth'), out_dir=cache, sha256='xyz')
    assert sum(server.requests.values()) == 0 and cached_files(cache) == []
    assert download.expected_sha256(f'a-{SHA256[:8]}.pth', SHA256.upper()) == SHA256


@pytest.mark.parametrize('name,sha256', [(f'good_20260101-{SHA256[:8]}.pth', None),
                                         ('plain.pth', SHA256[:32])])
def test_plain_http_needs_the_full_hash(server, cache, name, sha256):
    with pytest.raises(ValueError, match=r'Refused to download http://.*full SHA-256'):
        download_checkpoint(server.url(name), out_dir=cache, sha256=sha256, timeout=TIMEOUT)
    assert sum(server.requests.values()) == 0 and cached_files(cache) == []


def test_https_accepts_the_8_hex_file_name(https_server, cache):
    url = https_server.url(f'good_20240517-{SHA256[:8]}.pth')
    path = download_checkpoint(url, out_dir=cache, timeout=TIMEOUT)
    assert open(path, 'rb').read() == BODY
    with pytest.raises(ChecksumError):
        download_checkpoint(
            https_server.url(f'corrupt-{SHA256[:8]}.pth'), out_dir=cache, timeout=TIMEOUT)
    assert cached_files(cache) == [osp.basename(path)]


@pytest.mark.parametrize('target', ['ftp://127.0.0.1/evil.pth', 'file:///etc/passwd'])
def test_redirects_to_other_schemes_are_refused_and_named(server, cache, target):
    url = server.url(f'redirect?to={target}')
    with pytest.raises(DownloadError, match=rf'{re.escape(url)} redirects to {target}, refused'):
        download_checkpoint(url, out_dir=cache, sha256=SHA256, timeout=TIMEOUT)
    assert cached_files(cache) == []


def test_https_redirect_to_http_needs_the_full_hash(https_server, server, cache):
    target = server.url('plain.pth')
    url = https_server.url(f'redirect-{SHA256[:8]}.pth?to={target}')
    with pytest.raises(
            DownloadError, match=rf'redirects to {re.escape(target)}, refused: over '
            'plain http'):
        download_checkpoint(url, out_dir=cache, timeout=TIMEOUT)
    assert server.requests['/plain.pth'] == 0 and cached_files(cache) == []
    # with the full hash the file is verified whatever the way, and the redirect is followed
    path = download_checkpoint(url, out_dir=cache, sha256=SHA256, timeout=TIMEOUT)
    assert open(path, 'rb').read() == BODY and server.requests['/plain.pth'] == 1


def test_http_redirects_are_followed_with_the_full_hash(server, cache):
    url = server.url(f'redirect?to={server.url("plain.pth")}')
    path = download_checkpoint(url + f'#sha256={SHA256}', out_dir=cache, timeout=TIMEOUT)
    assert open(path, 'rb').read() == BODY and server.requests['/plain.pth'] == 1


def test_torch_hub_opens_urls_as_before_after_a_download(server, cache):
    before = torch.hub.urlopen
    with pytest.raises(DownloadError):
        download_checkpoint(server.url('missing.pth'), out_dir=cache, sha256=SHA256)
    assert torch.hub.urlopen is before


def write_index(tmp_path, url, sha256=None):
    (tmp_path / 'configs').mkdir()
    entry = f'  - Name: xformer-toy\n    Config: configs/toy.py\n    Weights: {url}\n'
    if sha256:
        entry += f'    SHA256: {sha256}\n'
    (tmp_path / 'configs' /
     'metafile.yml').write_text('Collections:\n  - Name: XFormer\nModels:\n' + entry +
                                '  - Name: xformer-unreleased\n    Config: configs/unreleased.py\n')
    index = tmp_path / 'model-index.yml'
    index.write_text('Import:\n  - configs/metafile.yml\n')
    return str(index)


def test_names_resolve_through_the_model_index(tmp_path, server, cache):
    index = write_index(tmp_path, server.url('plain.pth'), SHA256)
    assert sorted(model_index.load_model_index(index)) == ['xformer-toy', 'xformer-unreleased']
    path = download_checkpoint('xformer-toy', out_dir=cache, timeout=TIMEOUT, index=index)
    assert open(path, 'rb').read() == BODY
    with pytest.raises(ValueError, match='did you mean xformer-toy'):
        download_checkpoint('xformer-tiy', out_dir=cache, index=index)
    with pytest.raises(ValueError, match='no published checkpoint'):
        download_checkpoint('xformer-unreleased', out_dir=cache, index=index)


def test_the_index_gives_the_hash_of_its_urls(tmp_path, server, cache):
    index = write_index(tmp_path, server.url('plain.pth'), SHA256)
    path = download_checkpoint(server.url('plain.pth'), out_dir=cache, timeout=TIMEOUT, index=index)
    assert open(path, 'rb').read() == BODY


def test_an_http_index_entry_with_an_8_hex_name_and_no_hash_is_refused(tmp_path, server, cache):
    index = write_index(tmp_path, server.url(f'good_20260101-{SHA256[:8]}.pth'))
    with pytest.raises(ValueError, match='full SHA-256'):
        download_checkpoint('xformer-toy', out_dir=cache, timeout=TIMEOUT, index=index)
    assert sum(server.requests.values()) == 0 and cached_files(cache) == []


def test_hash_mismatch_from_the_index(tmp_path, server, cache):
    index = write_index(tmp_path, server.url('plain.pth'), OTHER_SHA256)
    with pytest.raises(ChecksumError):
        download_checkpoint('xformer-toy', out_dir=cache, timeout=TIMEOUT, index=index)
    assert cached_files(cache) == []


def test_no_model_index_means_no_models(monkeypatch):
    monkeypatch.setattr(model_index, 'find_model_index', lambda: None)
    assert model_index.load_model_index() == {}
    with pytest.raises(ValueError, match='no model-index.yml found'):
        download_checkpoint('xformer-toy')


def test_cache_dir_follows_mmxformer_home(monkeypatch, tmp_path):
    monkeypatch.setenv('MMXFORMER_HOME', str(tmp_path))
    assert download.default_cache_dir() == str(tmp_path / 'checkpoints')
    monkeypatch.delenv('MMXFORMER_HOME')
    monkeypatch.delenv('XDG_CACHE_HOME', raising=False)
    assert download.default_cache_dir() == osp.expanduser('~/.cache/mmxformer/checkpoints')


def test_download_tool(server, cache, capsys, load_tool):
    tool = load_tool('misc/download_checkpoint.py')
    url = server.url('plain.pth')
    path = tool.main([url, '--sha256', SHA256, '--out', cache, '--quiet'])
    assert capsys.readouterr().out.strip() == path == osp.join(cache, 'plain.pth')
    with pytest.raises(SystemExit, match='HTTP 404'):
        tool.main([server.url('missing.pth'), '--sha256', SHA256, '--out', cache, '--quiet'])
    with pytest.raises(SystemExit, match='full SHA-256'):
        tool.main([server.url('missing-12345678.pth'), '--out', cache, '--quiet'])


def test_download_tool_limits(server, cache, load_tool):
    tool = load_tool('misc/download_checkpoint.py')
    url = server.url('drip.pth')
    with pytest.raises(
            SystemExit,
            match=f'announces {len(BODY)} bytes .* more than the limit of '
            '1000; nothing was downloaded'):
        tool.main([url, '--sha256', SHA256, '--out', cache, '--quiet', '--max-size', '1000'])
    with pytest.raises(SystemExit, match='not complete after 0.5 s'):
        tool.main([url, '--sha256', SHA256, '--out', cache, '--quiet', '--deadline', '0.5'])
    with pytest.raises(SystemExit, match='deadline must be a positive number of seconds, got 0.0'):
        tool.main([url, '--sha256', SHA256, '--out', cache, '--quiet', '--deadline', '0'])
    assert cached_files(cache) == []


@pytest.fixture
def tls_server(certificate):
    """``(server, certificate file)``: the handler over https, trusted by no one unless told."""
    server = Server(certificate[0])
    yield server, certificate[1]
    server.stop()


def run_python(code, env=None, **kwargs):
    """``code`` in a fresh interpreter, in the repository."""
    return subprocess.run([sys.executable, '-c', code],
                          cwd=ROOT,
                          capture_output=True,
                          text=True,
                          timeout=300,
                          env=env,
                          **kwargs)


def test_https_without_a_hash_loads_over_verified_tls_and_prints_the_hash(tls_server, tmp_path):
    """After ``import mmxformer`` an https URL of any model loads as torch.hub's would: TLS
    verified (here through SSL_CERT_FILE), the SHA-256 printed to pin it, the file reused."""
    server, cert = tls_server
    url = server.url('checkpoint.pth')
    code = ('import mmxformer\n'
            'from mmengine.runner.checkpoint import CheckpointLoader\n'
            'for _ in range(2):\n'
            f'    print(CheckpointLoader.load_checkpoint({url!r})["state_dict"]["w"].tolist())')
    env = dict(os.environ, SSL_CERT_FILE=cert, MMXFORMER_HOME=str(tmp_path / 'home'))
    result = run_python(code, env)
    assert result.returncode == 0, result.stderr
    loaded = [line for line in result.stdout.splitlines() if not line.endswith(url)]  # logs
    assert loaded == ['[0.0, 1.0, 2.0]'] * 2
    pin = (f'Downloaded {url} (sha256 {CHECKPOINT_SHA256}); pin it with '
           f'#sha256={CHECKPOINT_SHA256}')
    assert result.stderr.splitlines().count(pin) == 1
    assert server.requests['/checkpoint.pth'] == 1  # the second load found it in the cache


def test_an_untrusted_certificate_is_one_line(tls_server, tmp_path):
    server, _ = tls_server
    url = server.url('checkpoint.pth')
    env = {key: value for key, value in os.environ.items() if key != 'SSL_CERT_FILE'}
    env['PYTHONPATH'] = ROOT  # this checkout's mmxformer, whatever is installed
    result = subprocess.run([
        sys.executable, 'tools/misc/download_checkpoint.py', url, '--out',
        str(tmp_path), '--quiet'
    ],
                            cwd=ROOT,
                            capture_output=True,
                            text=True,
                            timeout=300,
                            env=env)
    assert result.returncode == 1 and result.stdout == ''
    assert re.fullmatch(
        rf'download_checkpoint: {re.escape(url)}: the server\'s TLS certificate is not trusted '
        r'\(self.signed certificate\), nothing was downloaded; if the server is yours, add its '
        r'CA certificate to the system\'s or name it in SSL_CERT_FILE\n', result.stderr)
    assert server.requests['/checkpoint.pth'] == 0 and cached_files(str(tmp_path)) == []


def test_an_unpinned_file_is_reused_only_for_its_url_and_hash(https_server, cache, capsys):
    url = https_server.url('good.pth')
    path = download_checkpoint(url, out_dir=cache, timeout=TIMEOUT)
    assert open(path, 'rb').read() == BODY
    assert f'pin it with #sha256={SHA256}' in capsys.readouterr().err
    assert download_checkpoint(url, out_dir=cache, timeout=TIMEOUT) == path
    assert https_server.requests['/good.pth'] == 1
    # another URL with the same file name is another file
    assert download_checkpoint(url + '?v=2', out_dir=cache, timeout=TIMEOUT) == path
    assert https_server.requests['/good.pth?v=2'] == 1
    with open(path, 'wb') as f:  # the cached file changed since it was downloaded
        f.write(b'tampered')
    assert download_checkpoint(url + '?v=2', out_dir=cache, timeout=TIMEOUT) == path
    assert open(path, 'rb').read() == BODY and https_server.requests['/good.pth?v=2'] == 2
    assert cached_files(cache) == ['.good.pth.source', 'good.pth']
    # the stricter rules hold: a given hash must match; no plain http without the full hash
    with pytest.raises(ChecksumError):
        download_checkpoint(url, out_dir=cache, sha256=OTHER_SHA256[:8], timeout=TIMEOUT)
    target = https_server.url('plain.pth').replace('https', 'http')
    with pytest.raises(DownloadError, match=r'redirects to http://.*, refused: over plain http'):
        download_checkpoint(https_server.url(f'redirect?to={target}'), out_dir=cache)


def test_a_dripping_server_is_stopped_at_the_deadline(server, cache, monkeypatch):
    start = time.monotonic()
    with pytest.raises(
            DownloadError,
            match=r'not complete after 0.5 s \(\d+ bytes\), the '
            r'deadline; stopped and removed.*MMXFORMER_DOWNLOAD_DEADLINE'):
        download_checkpoint(
            server.url('drip.pth'), out_dir=cache, sha256=SHA256, timeout=TIMEOUT, deadline=0.5)
    assert time.monotonic() - start < 0.5 + 1 and cached_files(cache) == []
    with pytest.raises(DownloadError, match=r'not complete after 0.5 s \(0 bytes\)'):
        download_checkpoint(
            server.url('slowheaders.pth'),
            out_dir=cache,
            sha256=SHA256,
            timeout=TIMEOUT,
            deadline=0.5)
    monkeypatch.setenv('MMXFORMER_DOWNLOAD_DEADLINE', '0.5')
    with pytest.raises(DownloadError, match='not complete after 0.5 s'):
        download_checkpoint(server.url('drip.pth'), out_dir=cache, sha256=SHA256, timeout=TIMEOUT)
    monkeypatch.setenv('MMXFORMER_DOWNLOAD_DEADLINE', 'soon')
    with pytest.raises(
            ValueError,
            match="MMXFORMER_DOWNLOAD_DEADLINE must be a positive number "
            "of seconds, got 'soon'"):
        download_checkpoint(server.url('drip.pth'), out_dir=cache, sha256=SHA256)
    assert cached_files(cache) == []


def test_an_endless_body_is_stopped_at_the_size_cap(server, cache):
    with pytest.raises(
            DownloadError,
            match=r'more than 1048576 bytes arrived, the limit; '
            r'stopped and removed.*MMXFORMER_DOWNLOAD_MAX_SIZE'):
        download_checkpoint(
            server.url('endless.pth'), out_dir=cache, sha256=SHA256, max_size=1 << 20)
    assert cached_files(cache) == []


def test_a_huge_content_length_is_refused_before_reading(server, cache, monkeypatch):
    with pytest.raises(
            DownloadError,
            match=rf'announces {1 << 40} bytes \(Content-Length\), '
            rf'more than the limit of {2 << 30}; nothing was downloaded'):
        download_checkpoint(server.url('huge.pth'), out_dir=cache, sha256=SHA256)
    monkeypatch.setenv('MMXFORMER_DOWNLOAD_MAX_SIZE', '1000')
    with pytest.raises(DownloadError, match=f'announces {len(BODY)} bytes'):
        download_checkpoint(server.url('plain.pth'), out_dir=cache, sha256=SHA256)
    assert cached_files(cache) == []


def test_what_a_killed_download_left_is_removed_by_the_next(server, cache):
    url = server.url('drip.pth')
    code = ('from mmxformer.checkpoint.download import download_checkpoint\n'
            f'download_checkpoint({url!r}, out_dir={cache!r}, sha256={SHA256!r}, timeout=5, '
            'deadline=600, progress=False)')
    process = subprocess.Popen([sys.executable, '-c', code], cwd=ROOT)
    give_up = time.monotonic() + 120
    while not any(name.endswith('.partial') for name in cached_files(cache)):
        assert process.poll() is None and time.monotonic() < give_up
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert len(cached_files(cache)) == 2  # its .part and torch's .partial
    # those of a process that runs, and of another host, are not the next download's to remove
    running = f'.drip.pth.{download.HOST}.{os.getpid()}.abc_123.part'
    other_host = f'.drip.pth.{download.HOST}x.{process.pid}.abc_123.part'
    for name in (running, other_host):
        open(osp.join(cache, name), 'wb').close()
    download_checkpoint(server.url('plain.pth'), out_dir=cache, sha256=SHA256, timeout=TIMEOUT)
    assert cached_files(cache) == sorted([running, other_host, 'plain.pth'])


def test_a_download_that_cannot_be_written_is_one_line(server, cache):
    """A full disk (here a file size limit: EFBIG), through the tool."""

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (len(BODY) // 2, len(BODY) // 2))

    url = server.url('plain.pth')
    result = subprocess.run([
        sys.executable, 'tools/misc/download_checkpoint.py', url, '--sha256', SHA256, '--out',
        cache, '--quiet'
    ],
                            cwd=ROOT,
                            capture_output=True,
                            text=True,
                            timeout=300,
                            env=dict(os.environ, PYTHONPATH=ROOT),
                            preexec_fn=limit_file_size)
    assert result.returncode == 1
    assert re.fullmatch(
        rf'download_checkpoint: Cannot write {re.escape(url)} into the checkpoint cache '
        rf'{re.escape(cache)}: \[Errno 27\] File too large.*; make room there, or choose '
        r'another cache \(MMXFORMER_HOME, out_dir, --out\)\n', result.stderr)
    assert cached_files(cache) == []


@pytest.mark.parametrize('name', ['..', '%2e%2e', '.hidden.pth', 'a%00.pth', 'dir/'])
def test_a_url_that_names_no_file_is_refused(https_server, cache, name):
    with pytest.raises(ValueError, match='does not end with a file name to save it under'):
        download_checkpoint(https_server.url(name), out_dir=cache, sha256=SHA256)
    assert sum(https_server.requests.values()) == 0


def test_a_cache_that_is_a_file_is_named(server, tmp_path):
    (tmp_path / 'home').write_text('not a directory')
    with pytest.raises(ValueError, match=rf'{tmp_path / "home"} is a file, not a directory'):
        download_checkpoint(
            server.url('plain.pth'), out_dir=str(tmp_path / 'home' / 'checkpoints'), sha256=SHA256)


def test_odd_answers_of_the_server(server, cache):
    # a Content-Length that is no number: torch's int() of it failed; the body is verified
    path = download_checkpoint(server.url('badlength.pth'), out_dir=cache, sha256=SHA256)
    assert open(path, 'rb').read() == BODY
    with pytest.raises(DownloadError, match="the server's answer is not HTTP"):
        download_checkpoint(server.url('garbage.pth'), out_dir=cache, sha256=SHA256)
    with pytest.raises(DownloadError, match='HTTP 302.*infinite loop'):
        download_checkpoint(server.url('loop.pth'), out_dir=cache, sha256=SHA256)
    assert cached_files(cache) == ['badlength.pth']


def test_a_0_byte_file_is_named_when_loaded(https_server, tmp_path, monkeypatch):
    """... and is not kept in the cache, as a page served instead of the file would not be."""
    monkeypatch.setenv('MMXFORMER_HOME', str(tmp_path))
    for attempt in (1, 2):
        with pytest.raises(
                NotACheckpointError, match='is not a PyTorch checkpoint.*the file is empty'):
            CheckpointLoader.load_checkpoint(https_server.url('empty.pth'))
        assert https_server.requests['/empty.pth'] == attempt
    assert cached_files(str(tmp_path / 'checkpoints')) == ['.empty.pth.source']


@pytest.mark.parametrize('url', ['https://[::1/model.pth', 'https://exa mple.com/model.pth'])
def test_an_invalid_url_is_named(url, cache):
    with pytest.raises(ValueError, match=rf'^{re.escape(url)} is not a valid URL: '):
        download_checkpoint(url, out_dir=cache, sha256=SHA256, timeout=TIMEOUT)
    assert cached_files(cache) == []
