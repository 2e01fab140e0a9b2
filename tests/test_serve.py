"""`mlp serve` as a real process on 127.0.0.1: its API, its limits and errors, its page, its end."""

import csv
import http.client
import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import png_bytes
from PIL import Image, ImageDraw

from mlpcli.cli import main
from mlpcli.images import MAX_PIXELS
from mlpcli.predictor import Predictor
from mlpcli.serve_app import MAX_BODY_BYTES, MAX_ROWS

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

ROOT = Path(__file__).resolve().parent.parent


class Served:
    """A ``mlp serve`` process and requests to it."""

    def __init__(self, run_dir):
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen([sys.executable, "-m", "mlpcli", "serve", str(run_dir), "--port", "0"],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.line = self.process.stdout.readline()
        assert self.line.startswith("Serving "), self.line + self.process.stderr.read()
        self.port = int(self.line.rsplit(":", 1)[1])

    def request(self, method, path, body=None, content_type=None, headers=None):
        """(status, parsed JSON or raw bytes, response headers)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        sent = dict(headers or {})
        if content_type:
            sent["Content-Type"] = content_type
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        data = response.read()
        connection.close()
        kind = response.getheader("content-type", "")
        return response.status, json.loads(data) if kind.startswith("application/json") else data, kind

    def post_json(self, value, path="/predict"):
        return self.request("POST", path, json.dumps(value).encode(), "application/json")[:2]

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def digits(tiny_run):
    served = Served(tiny_run)
    yield served
    if served.process.poll() is None:
        served.process.kill()
        served.process.wait()


@pytest.fixture(scope="module")
def table(csv_run):
    served = Served(csv_run)
    yield served
    served.process.kill()
    served.process.wait()


def digit_png(tmp_path, name="one.png"):
    """A dark vertical stroke on white paper: a drawn 1."""
    image = Image.new("L", (64, 64), 255)
    ImageDraw.Draw(image).line([(32, 10), (30, 54)], fill=0, width=6)
    path = tmp_path / name
    image.save(path)
    return path


def cli_json(*args):
    result = CliRunner().invoke(main, ["predict", *map(str, args), "--json"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def without_source(prediction):
    return {k: v for k, v in prediction.items() if k != "source"}


def assert_close(served, expected):
    assert len(served) == len(expected)
    for got, want in zip(served, expected):
        assert got["class"] == want["class"]
        assert [t["class"] for t in got["top_k"]] == [t["class"] for t in want["top_k"]]
        np.testing.assert_allclose([t["probability"] for t in got["top_k"]],
                                   [t["probability"] for t in want["top_k"]], atol=1e-6)


# ---------------------------------------------------------------- a digits model

def test_health_metadata_and_page(digits, tiny_run):
    assert digits.line.strip().endswith(f"http://127.0.0.1:{digits.port}")
    assert digits.request("GET", "/health")[:2] == (200, {"status": "ok"})
    status, meta, _ = digits.request("GET", "/metadata")
    assert status == 200
    assert meta["kind"] == "digits" and meta["task"] == "classification"
    assert meta["class_names"] == [str(i) for i in range(10)]
    assert meta["input_shape"] == [784] and meta["feature_shape"] == [28, 28] and meta["columns"] is None
    assert meta["run"] == str(tiny_run) and meta["model"] == str(tiny_run / "model.h5")
    assert "Total params" in meta["summary"] and meta["pipeline"]["record"]["kind"] == "digits"
    status, page, kind = digits.request("GET", "/")
    assert status == 200 and kind.startswith("text/html")
    for element in (b'<canvas id="pad"', b'id="clear"', b'id="upload"', b'<output id="answer"',
                    b'<ol id="top"', b'<p id="status"', b'src="page.js"', b'href="page.css"'):
        assert element in page
    assert b"http" not in page  # nothing from outside: works offline
    for path, kind_start in (("/page.js", "text/javascript"), ("/page.css", "text/css")):
        status, text, kind = digits.request("GET", path)
        assert status == 200 and kind.startswith(kind_start) and b"http" not in text


def test_json_rows_match_the_predictor(digits, tiny_run):
    rows = np.random.default_rng(0).integers(0, 256, (5, 784)).astype(float)
    status, answer = digits.post_json({"rows": rows.tolist()})
    assert status == 200
    predictor = Predictor.open(tiny_run)
    expected = predictor.decode(["r"] * 5, predictor.outputs(predictor.prepare(rows, "rows")), 3)
    assert_close(answer["predictions"], [without_source(p.as_dict()) for p in expected])
    # shaped samples (28x28) and one sample alone are read as mlp predict reads a .npy
    status, shaped = digits.post_json({"rows": rows.reshape(5, 28, 28).tolist()})
    assert status == 200
    assert_close(shaped["predictions"], answer["predictions"])
    status, single = digits.post_json({"rows": rows[0].reshape(28, 28).tolist()})
    assert status == 200
    assert_close(single["predictions"], answer["predictions"][:1])  # float32 sums differ by batch: close


def test_top_k(digits):
    rows = {"rows": np.full((1, 784), 128.0).tolist()}
    status, answer = digits.post_json(rows, "/predict?top_k=5")
    assert status == 200 and len(answer["predictions"][0]["top_k"]) == 5
    assert digits.post_json(rows, "/predict")[1]["predictions"][0]["top_k"].__len__() == 3
    for bad in ("0", "11", "two"):
        status, error = digits.post_json(rows, f"/predict?top_k={bad}")
        assert status == 400 and "top_k" in error["error"]


def test_png_body_matches_mlp_predict(digits, tiny_run, tmp_path):
    path = digit_png(tmp_path)
    status, answer, _ = digits.request("POST", "/predict", path.read_bytes(), "image/png")
    assert status == 200
    assert_close(answer["predictions"], [without_source(p) for p in cli_json(path, "--run", tiny_run)])


def test_multipart_two_files_in_order(digits, tiny_run, tmp_path):
    one = digit_png(tmp_path, "one.png")
    zero = tmp_path / "zero.png"
    image = Image.new("L", (64, 64), 255)
    ImageDraw.Draw(image).ellipse([16, 8, 48, 56], outline=0, width=6)
    image.save(zero)
    boundary = uuid.uuid4().hex
    body = b"".join(
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{p.name}\"\r\n"
        f"Content-Type: image/png\r\n\r\n".encode() + p.read_bytes() + b"\r\n" for p in (zero, one))
    body += f"--{boundary}--\r\n".encode()
    status, answer, _ = digits.request("POST", "/predict", body, f"multipart/form-data; boundary={boundary}")
    assert status == 200, answer
    expected = cli_json(zero, one, "--run", tiny_run)
    assert_close(answer["predictions"], [without_source(p) for p in expected])


@pytest.mark.parametrize("body, content_type, status, words", [
    (b'{"rows": [[true, false]]}', "application/json", 400, "true/false where numbers belong"),
    (b"{not json", "application/json", 400, "not valid JSON"),
    (b'{"rows": [[1, 2, 3]]}', "application/json", 400, "the model takes 784 values"),
    (b'{"rows": [[1, 2], [3]]}', "application/json", 400, "different lengths"),
    (json.dumps({"rows": [["a"] * 784]}).encode(), "application/json", 400, "not numbers"),
    (b'{"pixels": []}', "application/json", 400, '"rows"'),
    (b'{"columns": {"a": [1]}}', "application/json", 400, "no named columns"),
    (b"GIF89a not really", "image/png", 400, "image"),
    (b"x=1", "application/x-www-form-urlencoded", 415, "unsupported Content-Type"),
    (b"--x\r\n\r\n--x--\r\n", "multipart/form-data; boundary=x", 400, "named 'file'"),
])
def test_errors_are_json_and_the_server_keeps_serving(digits, body, content_type, status, words):
    got, answer, kind = digits.request("POST", "/predict", body, content_type)
    assert (got, kind) == (status, "application/json")
    assert words in answer["error"] and "Traceback" not in answer["error"]
    assert digits.request("GET", "/health")[:2] == (200, {"status": "ok"})


def test_blank_digit_image(digits):
    blank = io.BytesIO()
    Image.new("L", (28, 28), 255).save(blank, format="PNG")
    status, answer, _ = digits.request("POST", "/predict", blank.getvalue(), "image/png")
    assert status == 400 and "blank" in answer["error"]
    assert digits.request("GET", "/health")[0] == 200


def test_image_over_the_pixel_limit_is_413(digits):
    side = int(MAX_PIXELS ** 0.5) + 1  # the header claims it; nothing is decoded
    status, answer, _ = digits.request("POST", "/predict", png_bytes(side, side), "image/png")
    assert status == 413 and "too large" in answer["error"] and f"{MAX_PIXELS:,}" in answer["error"]


def test_unknown_route_and_method(digits):
    assert digits.request("GET", "/nowhere")[:2] == (404, {"error": "Not Found"})
    status, answer, kind = digits.request("GET", "/predict")
    assert (status, kind, answer) == (405, "application/json", {"error": "Method Not Allowed"})


def test_too_many_rows_is_413(digits):
    status, answer = digits.post_json({"rows": [[0]] * (MAX_ROWS + 1)})
    assert status == 413 and f"{MAX_ROWS:,}" in answer["error"]


def test_body_over_the_limit_is_refused_before_it_is_read(digits):
    """The server answers 413 from the Content-Length, though only a fraction of it is sent."""
    connection = http.client.HTTPConnection("127.0.0.1", digits.port, timeout=10)
    connection.putrequest("POST", "/predict")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(100 * MAX_BODY_BYTES))
    connection.endheaders(b'{"rows": [')
    response = connection.getresponse()  # would time out if the server waited for the body
    assert response.status == 413 and "10 MiB" in json.loads(response.read())["error"]
    connection.close()
    # and a body that says nothing of its length (chunked) is cut off as it grows past the limit
    connection = http.client.HTTPConnection("127.0.0.1", digits.port, timeout=30)
    chunks = (b"[" + b"0," * (1 << 19) for _ in range(MAX_BODY_BYTES // (1 << 20) + 2))
    connection.request("POST", "/predict", body=chunks, headers={"Content-Type": "application/json"},
                       encode_chunked=True)
    response = connection.getresponse()
    assert response.status == 413
    connection.close()
    assert digits.request("GET", "/health")[0] == 200


def test_answers_do_not_wait_for_delayed_acks(digits):
    """Answers are sent at once (TCP_NODELAY): 20 requests on one connection take milliseconds,
    not the ~40 ms each that Nagle's algorithm and the client's delayed ACK would add."""
    connection = http.client.HTTPConnection("127.0.0.1", digits.port, timeout=10)
    start = time.perf_counter()
    for _ in range(20):
        connection.request("GET", "/health")
        assert connection.getresponse().read() == b'{"status":"ok"}'
    connection.close()
    assert time.perf_counter() - start < 0.5


# ---------------------------------------------------------------- a table model

def test_table_columns_and_rows(table, csv_run):
    status, meta, _ = table.request("GET", "/metadata")
    assert status == 200 and meta["kind"] == "table" and len(meta["columns"]) == 30
    assert meta["class_names"] == Predictor.open(csv_run).class_names
    with open(ROOT / "configs" / "data" / "breast_cancer_test.csv", newline="") as f:
        records = list(csv.DictReader(f))[:4]
    columns = {name: [float(r[name]) for r in records] for name in reversed(meta["columns"])}  # any order
    status, by_columns = table.post_json({"columns": columns})
    assert status == 200 and len(by_columns["predictions"]) == 4
    rows = [[float(r[name]) for name in meta["columns"]] for r in records]
    status, by_rows = table.post_json({"rows": rows})
    assert status == 200
    predictor = Predictor.open(csv_run)
    expected = predictor.decode(["r"] * 4, predictor.outputs(predictor.prepare(np.array(rows), "rows")), 3)
    for answer in (by_columns, by_rows):
        assert_close(answer["predictions"], [without_source(p.as_dict()) for p in expected])
    text_cells = {name: [str(v) for v in cells] for name, cells in columns.items()}  # as a CSV holds them
    assert_close(table.post_json({"columns": text_cells})[1]["predictions"], by_columns["predictions"])


def test_table_column_errors(table):
    status, meta, _ = table.request("GET", "/metadata")
    full = {name: [1.0] for name in meta["columns"]}
    first = meta["columns"][0]
    cases = [({**full, "colour": [1.0]}, "unknown column(s) 'colour'"),
             ({k: v for k, v in full.items() if k != first}, f"missing column(s) '{first}'"),
             ({**full, first: ["lots"]}, first),
             ({**full, first: [1.0, 2.0]}, "all of one length")]
    for columns, words in cases:
        status, answer = table.post_json({"columns": columns})
        assert status == 400 and words in answer["error"], answer
    status, answer, _ = table.request("POST", "/predict", digit_png_bytes(), "image/png")
    assert status == 400 and "not images" in answer["error"]
    assert table.request("GET", "/health")[0] == 200


def digit_png_bytes():
    out = io.BytesIO()
    Image.new("L", (28, 28), 0).save(out, format="PNG")
    return out.getvalue()


# ---------------------------------------------------------------- the end (last: it stops the server)

def test_sigterm_stops_it_cleanly(digits):
    assert digits.stop() == 0


def test_warns_when_listening_beyond_loopback(tiny_run):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "mlpcli", "serve", str(tiny_run), "--host", "0.0.0.0",
                                "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        warning = process.stdout.readline()
        serving = process.stdout.readline()
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    assert warning.startswith("Warning: --host 0.0.0.0") and "authentication" in warning
    assert serving.startswith("Serving ") and "http://0.0.0.0:" in serving


def test_other_commands_do_not_import_the_server():
    code = ("import sys; from click.testing import CliRunner; from mlpcli.cli import main; "
            "assert CliRunner().invoke(main, ['serve', '--help']).exit_code == 0; "
            "print(sorted(m for m in ('starlette', 'uvicorn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True).stdout
    assert out.strip() == "[]"


def test_a_missing_extra_is_one_line(tiny_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn -> ImportError
    result = CliRunner().invoke(main, ["serve", str(tiny_run)])
    assert result.exit_code == 2
    assert result.output == "Error: mlp serve needs starlette and uvicorn: pip install 'mlpcli[serve]'\n"


def test_a_port_in_use_is_an_os_error(table, tiny_run):
    result = subprocess.run([sys.executable, "-m", "mlpcli", "serve", str(tiny_run), "--port", str(table.port)],
                            capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 1 and f"Error: cannot listen on 127.0.0.1:{table.port}" in result.stderr


@pytest.mark.slow
def test_a_body_that_stops_arriving_is_408_and_others_are_served_meanwhile(table):
    import socket

    from mlpcli.serve_app import BODY_TIMEOUT_SECONDS

    with socket.create_connection(("127.0.0.1", table.port), timeout=BODY_TIMEOUT_SECONDS + 30) as stalled:
        stalled.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 100\r\n\r\n{")
        assert table.request("GET", "/health")[0] == 200
        answer = b""
        while b"stopped arriving" not in answer:  # the status line and the body may come apart
            part = stalled.recv(65536)
            if not part:
                break
            answer += part
    assert answer.startswith(b"HTTP/1.1 408") and b"the body stopped arriving" in answer
