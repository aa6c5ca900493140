import hashlib
import http.server
import importlib.util
import os
import os.path as osp
import re
import threading
from collections import Counter

import pytest

from mmxformer.apis import download, model_index
from mmxformer.apis.download import ChecksumError, DownloadError, download_checkpoint

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BODY = os.urandom(3 * download.CHUNK_SIZE // 2)  # more than one chunk
SHA256 = hashlib.sha256(BODY).hexdigest()
OTHER_SHA256 = hashlib.sha256(b'something else').hexdigest()
TIMEOUT = 0.3


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves each failure a download can meet. Names carry the hash suffix OpenMMLab uses."""

    def do_GET(self):
        self.server.requests[self.path] += 1
        name = re.match(r'/([a-z]*)', self.path).group(1)
        if name == 'missing':
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

    def __init__(self):
        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.requests = Counter()
        self.httpd.release = threading.Event()
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs=dict(poll_interval=0.05), daemon=True)
        self.thread.start()
        self.running = True

    def url(self, name):
        return f'http://127.0.0.1:{self.httpd.server_address[1]}/{name}'

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


@pytest.fixture
def cache(tmp_path):
    return str(tmp_path / 'cache')


def cached_files(cache):
    return sorted(os.listdir(cache)) if osp.isdir(cache) else []


def test_good_download_is_verified_and_named(server, cache):
    url = server.url(f'good_20240517-{SHA256[:8]}.pth')
    path = download_checkpoint(url, out_dir=cache, timeout=TIMEOUT)
    assert path == osp.join(cache, f'good_20240517-{SHA256[:8]}.pth')
    assert open(path, 'rb').read() == BODY
    assert cached_files(cache) == [osp.basename(path)]


def test_cached_file_is_reused_without_the_network(server, cache):
    url = server.url(f'good-{SHA256[:8]}.pth')
    path = download_checkpoint(url, out_dir=cache, timeout=TIMEOUT, progress=True)
    server.stop()
    assert download_checkpoint(url, out_dir=cache, timeout=TIMEOUT) == path
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


@pytest.mark.parametrize('name,sha256,error,match', [
    ('missing-12345678.pth', None, DownloadError, 'HTTP 404'),
    ('slow-12345678.pth', None, DownloadError, 'timed out.* after 0 bytes'),
    ('stall-12345678.pth', None, DownloadError, 'timed out.* after [1-9]'),
    ('truncated-12345678.pth', None, DownloadError, rf'truncated body, {len(BODY) // 2} bytes of '
     rf'the {len(BODY)} bytes'),
    (f'corrupt-{SHA256[:8]}.pth', None, ChecksumError, f'does not start with the expected '
     f'{SHA256[:8]}'),
    ('plain.pth', OTHER_SHA256, ChecksumError, f'expected {OTHER_SHA256}'),
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


def write_index(tmp_path, url, sha256=None):
    (tmp_path / 'configs').mkdir()
    entry = f'  - Name: xformer-toy\n    Config: configs/toy.py\n    Weights: {url}\n'
    if sha256:
        entry += f'    SHA256: {sha256}\n'
    (tmp_path / 'configs' / 'metafile.yml').write_text(
        'Collections:\n  - Name: XFormer\nModels:\n' + entry +
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


def test_hash_mismatch_from_the_index(tmp_path, server, cache):
    index = write_index(tmp_path, server.url('plain.pth'), OTHER_SHA256[:16])
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
        tool.main([server.url('missing-12345678.pth'), '--out', cache, '--quiet'])
