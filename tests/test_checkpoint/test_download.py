import hashlib
import http.server
import os
import os.path as osp
import re
import ssl
import subprocess
import threading
from collections import Counter
from urllib.parse import parse_qs, urlparse

import pytest
import torch.hub

from mmxformer.checkpoint import download, model_index
from mmxformer.checkpoint.download import ChecksumError, DownloadError, download_checkpoint

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BODY = os.urandom(3 * torch.hub.READ_DATA_CHUNK // 2)  # more than one read of torch's
SHA256 = hashlib.sha256(BODY).hexdigest()
OTHER_SHA256 = hashlib.sha256(b'something else').hexdigest()
TIMEOUT = 0.3


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
        else:
            self.send_error(500)

    def _send(self, body, length):
        self.send_response(200)
        self.send_header('Content-Length', str(length))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

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


def test_expected_hash_is_required_and_consistent(server, cache):
    with pytest.raises(ValueError, match='No expected SHA-256'):
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
