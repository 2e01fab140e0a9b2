"""Downloads from mirrors served by a real local HTTP server, and the built-in fallback."""

import dataclasses
import functools
import gzip
import hashlib
import http.server
import shutil
import socket
import struct
import threading

import numpy as np
import pytest

from mlpcli.data import builtin, load_dataset
from mlpcli.data.builtin import (
    BUILTINS,
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
)
from mlpcli.data.download import Checksum, default_cache_dir, fetch
from mlpcli.errors import DataError

CONTENT = b"some dataset bytes " * 1000
GOOD = Checksum(hashlib.md5(CONTENT).hexdigest())


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch, tmp_path):
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MLPCLI_DATA", str(tmp_path / "cache"))


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """(root folder, base URL, list of requested paths) of an HTTP server on 127.0.0.1."""
    root = tmp_path / "www"
    root.mkdir()
    requests = []

    class Handler(_Handler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(root))
    )
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}", requests
    httpd.shutdown()
    httpd.server_close()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def serve(root, mirror: str, name: str, data: bytes):
    (root / mirror).mkdir(exist_ok=True)
    (root / mirror / name).write_bytes(data)


def test_default_cache_dir(monkeypatch, tmp_path):
    assert default_cache_dir("mnist") == tmp_path / "cache" / "mnist"
    monkeypatch.delenv("MLPCLI_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert (
        default_cache_dir("fashion_mnist")
        == tmp_path / "home" / ".cache" / "mlpcli" / "fashion_mnist"
    )


def test_good_file_is_downloaded_and_cached(server, tmp_path):
    root, url, requests = server
    serve(root, "m1", "f.bin", CONTENT)
    messages = []
    path = fetch("f.bin", [url + "/m1/"], GOOD, tmp_path / "c", progress=messages.append)
    assert path == tmp_path / "c" / "f.bin"
    assert path.read_bytes() == CONTENT
    assert requests == ["/m1/f.bin"]
    assert any("downloading" in m and "/m1/f.bin" in m for m in messages)
    assert [p.name for p in (tmp_path / "c").iterdir()] == ["f.bin"]  # no temp files left


def test_corrupt_first_mirror_is_rejected_and_second_used(server, tmp_path):
    root, url, requests = server
    serve(root, "bad", "f.bin", CONTENT[:-1] + b"X")
    serve(root, "good", "f.bin", CONTENT)
    messages = []
    path = fetch(
        "f.bin", [url + "/bad", url + "/good"], GOOD, tmp_path / "c", progress=messages.append
    )
    assert path.read_bytes() == CONTENT
    assert requests == ["/bad/f.bin", "/good/f.bin"]
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["f.bin"]


def test_gunzipped_checksum_accepts_any_compression_of_the_content(server, tmp_path):
    root, url, _ = server
    serve(root, "m", "f.gz", gzip.compress(CONTENT, compresslevel=1))
    checksum = Checksum(hashlib.md5(CONTENT).hexdigest(), "gunzipped")
    path = fetch("f.gz", [url + "/m"], checksum, tmp_path / "c")
    assert gzip.decompress(path.read_bytes()) == CONTENT


def test_all_mirrors_failing_gives_a_clear_error(server, tmp_path):
    root, url, _ = server
    serve(root, "bad", "f.bin", b"wrong")
    dead = closed_port_url()
    mirrors = [dead, url + "/missing/", url + "/bad/"]
    with pytest.raises(DataError) as info:
        fetch("f.bin", mirrors, GOOD, tmp_path / "c", timeout=5)
    message = str(info.value)
    assert f"{dead}f.bin: " in message and "refused" in message.lower()
    assert f"{url}/missing/f.bin: HTTP 404" in message
    assert f"{url}/bad/f.bin: downloaded file rejected: md5 is" in message
    assert "offline" in message
    assert str(tmp_path / "c" / "f.bin") in message
    assert not (tmp_path / "c" / "f.bin").exists()
    assert list((tmp_path / "c").iterdir()) == []


def test_cached_file_is_reused_without_network(server, tmp_path):
    root, url, requests = server
    serve(root, "m", "f.bin", CONTENT)
    first = fetch("f.bin", [url + "/m"], GOOD, tmp_path / "c")
    again = fetch("f.bin", [closed_port_url()], GOOD, tmp_path / "c")
    assert again == first
    assert requests == ["/m/f.bin"]


def test_corrupt_cached_file_is_downloaded_again(server, tmp_path):
    root, url, requests = server
    serve(root, "m", "f.bin", CONTENT)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "f.bin").write_bytes(b"half a fi")
    messages = []
    path = fetch("f.bin", [url + "/m"], GOOD, tmp_path / "c", progress=messages.append)
    assert path.read_bytes() == CONTENT
    assert requests == ["/m/f.bin"]
    assert any("unusable" in m for m in messages)


# --- built-in datasets: bundled file corrupt, and a downloaded dataset ---


def _corrupt_bundle(tmp_path):
    """A copy of the bundled MNIST folder whose train labels are valid gzip but wrong."""
    bundle = tmp_path / "bundle"
    shutil.copytree(BUILTINS["mnist"].bundled_dir, bundle)
    labels = bytearray(gzip.decompress((bundle / TRAIN_LABELS).read_bytes()))
    labels[8] = (labels[8] + 1) % 10
    (bundle / TRAIN_LABELS).write_bytes(gzip.compress(bytes(labels)))
    return bundle


def test_corrupt_bundled_file_falls_back_to_a_mirror(server, tmp_path):
    root, url, requests = server
    good = BUILTINS["mnist"].bundled_dir / TRAIN_LABELS
    serve(root, "mnist", TRAIN_LABELS, good.read_bytes())
    spec = dataclasses.replace(
        BUILTINS["mnist"], bundled_dir=_corrupt_bundle(tmp_path), mirrors=(url + "/mnist/",)
    )
    messages = []
    path = builtin.locate_file(spec, TRAIN_LABELS, messages.append)
    assert path == tmp_path / "cache" / "mnist" / TRAIN_LABELS
    assert gzip.decompress(path.read_bytes())[8:18] == bytes([5, 0, 4, 1, 9, 2, 1, 3, 1, 4])
    assert any("bundled" in m and "unusable" in m for m in messages)
    assert requests == [f"/mnist/{TRAIN_LABELS}"]
    # The intact bundled files are used as they are.
    assert builtin.locate_file(spec, TEST_LABELS) == spec.bundled_dir / TEST_LABELS


def test_corrupt_bundled_file_and_no_mirror_is_an_error(monkeypatch, tmp_path):
    spec = dataclasses.replace(
        BUILTINS["mnist"], bundled_dir=_corrupt_bundle(tmp_path), mirrors=(closed_port_url(),)
    )
    monkeypatch.setitem(BUILTINS, "mnist", spec)
    with pytest.raises(DataError) as info:
        load_dataset({"dataset": "mnist"})
    message = str(info.value)
    assert f"bundled {spec.bundled_dir / TRAIN_LABELS} is unusable" in message
    assert "md5 of gunzipped content is" in message
    assert "offline" in message


def _tiny_idx_gz(values: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, values.ndim]) + struct.pack(f">{values.ndim}I", *values.shape)
    return gzip.compress(header + values.astype(np.uint8).tobytes())


def test_downloaded_builtin_dataset_loads(server, monkeypatch, tmp_path):
    root, url, requests = server
    rng = np.random.default_rng(0)
    files = {
        TRAIN_IMAGES: _tiny_idx_gz(rng.integers(0, 256, (6, 28, 28))),
        TRAIN_LABELS: _tiny_idx_gz(np.array([0, 1, 2, 9, 9, 3])),
        TEST_IMAGES: _tiny_idx_gz(rng.integers(0, 256, (2, 28, 28))),
        TEST_LABELS: _tiny_idx_gz(np.array([7, 8])),
    }
    for name, data in files.items():
        serve(root, "fashion", name, data)
    spec = dataclasses.replace(
        BUILTINS["fashion_mnist"],
        checksums={n: Checksum(hashlib.md5(d).hexdigest(), "file") for n, d in files.items()},
        mirrors=(closed_port_url(), url + "/fashion/"),
    )
    monkeypatch.setitem(BUILTINS, "fashion_mnist", spec)
    data = load_dataset({"dataset": "fashion_mnist"})
    assert data.x_train.shape == (6, 28, 28) and data.x_test.shape == (2, 28, 28)
    assert data.y_train.tolist() == [0, 1, 2, 9, 9, 3] and data.y_test.tolist() == [7, 8]
    assert data.class_names[0] == "T-shirt/top" and data.class_names[9] == "Ankle boot"
    assert data.x_train.min() >= 0.0 and data.x_train.max() <= 1.0
    assert sorted(p.name for p in (tmp_path / "cache" / "fashion_mnist").iterdir()) == sorted(files)
    # A second load uses the cache only.
    count = len(requests)
    load_dataset({"dataset": "fashion_mnist"})
    assert len(requests) == count


def test_silent_server_times_out(tmp_path):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        with pytest.raises(DataError, match="f.bin: timed out"):
            fetch("f.bin", [url], GOOD, tmp_path / "c", timeout=0.3)
    assert list((tmp_path / "c").iterdir()) == []
