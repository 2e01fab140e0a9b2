"""How much `mlp serve` answers under load on loopback, and how fast.

    python benchmarks/bench_serve.py [--run runs/<run>] [--clients 50] [--seconds 30]

Starts `mlp serve RUN --host 127.0.0.1 --port 0` as its own process (without --run, first
trains configs/quick.yaml into a temporary folder), then CLIENTS concurrent clients, each a
thread with one keep-alive HTTP connection, send requests for SECONDS: half of them single
MNIST test digits as `image/png` bodies, half 100-row JSON bodies (`{"rows": ...}`, raw
pixels). Every answer is checked (status 200, one prediction per image or row); prints
requests/s and p50/p99 latency per kind, and the number of failed requests, which must be 0
(the exit status is 1 otherwise). Bounded: the clients stop at the deadline (each request
times out after --timeout s) and the server is stopped at the end, whatever happened.
"""

import argparse
import http.client
import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("png", "json")
DIGITS = 100  # distinct test digits the clients cycle through
SERVER_START_S = 120


def mnist_test_digits(count):
    from mlpcli.data import load_dataset

    data = load_dataset({"dataset": "mnist"}, scale=False)
    return data.x_test[:count].reshape(count, 28, 28).astype(np.uint8)


def bodies(rows):
    """The request bodies: (content type, bytes, predictions expected) per kind, several each."""
    digits = mnist_test_digits(max(DIGITS, rows))
    pngs = []
    for digit in digits[:DIGITS]:
        buffer = io.BytesIO()
        Image.fromarray(digit).save(buffer, format="PNG")
        pngs.append(("image/png", buffer.getvalue(), 1))
    flat = digits.reshape(len(digits), -1)
    tables = [("application/json", json.dumps({"rows": np.roll(flat, -i, axis=0)[:rows].tolist()}).encode(), rows)
              for i in range(0, DIGITS, 10)]
    return {"png": pngs, "json": tables}


def train_quick(folder):
    run_dir = Path(folder) / "run"
    subprocess.run([sys.executable, "-m", "mlpcli", "train", str(ROOT / "configs" / "quick.yaml"),
                    "--run-dir", str(run_dir), "-q", "--no-plots"], check=True)
    return run_dir


class Server:
    """`mlp serve` as a process: its address from its first line, its output drained so that
    logging every request never blocks it on a full pipe."""

    def __init__(self, run_dir, log_path):
        env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
        with open(log_path, "w") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "mlpcli", "serve", str(run_dir),
                                          "--host", "127.0.0.1", "--port", "0"],
                                         stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        self.log_path, self.lines, first = log_path, [], threading.Event()

        def drain():
            for line in self.proc.stdout:
                self.lines.append(line)
                first.set()
            first.set()

        threading.Thread(target=drain, daemon=True).start()
        first.wait(SERVER_START_S)
        found = re.search(r" on http://([^:/\s]+):(\d+)", self.lines[0]) if self.lines else None
        if found is None:
            self.stop()
            raise SystemExit(f"mlp serve did not say where it serves within {SERVER_START_S} s: "
                             f"{self.lines!r}\n{Path(log_path).read_text()}")
        self.host, self.port = found.group(1), int(found.group(2))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def client(server, kind, requests, deadline, timeout, latencies, failures):
    """Send ``requests`` (cycling) on one keep-alive connection until ``deadline``; record each
    answer's latency, or a failure with its reason."""
    conn, i = None, 0
    while time.monotonic() < deadline:
        content_type, body, expected = requests[i % len(requests)]
        i += 1
        start = time.perf_counter()
        try:
            if conn is None:
                conn = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
            conn.request("POST", "/predict?top_k=3", body=body, headers={"Content-Type": content_type})
            response = conn.getresponse()
            answer = response.read()
            elapsed = time.perf_counter() - start
            if response.status != 200:
                failures.append(f"{kind}: HTTP {response.status} {answer[:200]!r}")
                continue
            got = len(json.loads(answer)["predictions"])
            if got != expected:
                failures.append(f"{kind}: {got} predictions for {expected} inputs")
                continue
            latencies.append(elapsed)
        except (OSError, http.client.HTTPException, ValueError, KeyError) as exc:
            failures.append(f"{kind}: {type(exc).__name__}: {exc}")
            if conn is not None:
                conn.close()
            conn = None
    if conn is not None:
        conn.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="the run to serve (default: configs/quick.yaml, trained first)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients, half of each kind")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rows", type=int, default=100, help="rows in each JSON request")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds one request may take")
    args = parser.parse_args()
    if args.clients < 2 or args.seconds <= 0 or args.rows < 1:
        parser.error("--clients must be at least 2, --seconds and --rows positive")

    requests = bodies(args.rows)
    with tempfile.TemporaryDirectory() as folder:
        run_dir = Path(args.run).resolve() if args.run else train_quick(folder)
        server = Server(run_dir, Path(folder) / "serve.log")
        try:
            latencies = {kind: [] for kind in KINDS}
            failures = []
            deadline = time.monotonic() + args.seconds
            threads = [threading.Thread(target=client, args=(server, KINDS[i % 2], requests[KINDS[i % 2]],
                                                             deadline, args.timeout,
                                                             latencies[KINDS[i % 2]], failures))
                       for i in range(args.clients)]
            started = time.monotonic()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.monotonic() - started
        finally:
            code = server.stop()
    print(f"mlp serve {run_dir}: {args.clients} clients for {elapsed:.1f} s on loopback "
          f"({os.cpu_count()} cores shared by the server and the clients); server exit status {code}")
    print(f"{'requests':<22} {'answered':>9} {'per s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for kind, label in zip(KINDS, ("one PNG digit", f"{args.rows}-row JSON")):
        seconds = np.asarray(latencies[kind]) * 1000
        p50, p99 = (np.percentile(seconds, [50, 99]) if len(seconds) else (float("nan"),) * 2)
        print(f"{label:<22} {len(seconds):>9,} {len(seconds) / elapsed:>8.1f} {p50:>8.1f} {p99:>8.1f}")
    total = sum(len(v) for v in latencies.values())
    print(f"{'all':<22} {total:>9,} {total / elapsed:>8.1f}")
    print(f"failed requests: {len(failures)}")
    for reason in sorted(set(failures))[:10]:
        print(f"  {reason}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
