"""How fast new rows in a CSV file are read and predicted, and that memory stays flat.

    python benchmarks/bench_predict_csv.py [--rows 1000000] [--small 100000]

Writes (in a temporary folder) a CSV file of ROWS rows of 30 float columns and a
label column, and one of SMALL rows. Each step runs in a fresh process, so each
measurement has its own peak memory (Linux carries ru_maxrss over an exec, so
the parent, which forks them, stays small): reading the file alone through
read_table_rows, a chunk at a time, and reading it, predicting every chunk with
a stand-in model and writing the predictions to a .csv file through
open_prediction_file. Reported: rows per second, and the peak RSS over the
process's RSS before the file was opened (ru_maxrss). Flat memory shows as the
same increase for both files.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

FEATURES = 30
CHUNK_ROWS = 8192


class StandInModel:
    """A 30-16-2 MLP in plain numpy, standing in for the trained model's predictor."""

    def __init__(self, rng):
        self.w1 = rng.standard_normal((FEATURES, 16), dtype=np.float32) / np.sqrt(FEATURES)
        self.w2 = rng.standard_normal((16, 2), dtype=np.float32) / 4
        self.n_outputs, self.task, self.class_names = 2, "classification", ["no", "yes"]

    def outputs(self, x):
        """float32 (k, 2) softmax probabilities."""
        z = np.maximum(x @ self.w1, 0) @ self.w2
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


def write_csv(path, rows):
    """ROWS rows drawn from a pool of 4096 distinct random rows (formatting each of 30 million
    numbers would take longer than reading them)."""
    rng = np.random.default_rng(rows)
    pool = [",".join(f"{v:.6g}" for v in row) + f",{'yes' if row[0] > 0 else 'no'}\n"
            for row in rng.standard_normal((4096, FEATURES)).tolist()]
    with open(path, "w") as f:
        f.write(",".join(f"f{j}" for j in range(FEATURES)) + ",label\n")
        for start in range(0, rows, 100_000):
            picks = rng.integers(0, len(pool), min(100_000, rows - start))
            f.write("".join(pool[i] for i in picks.tolist()))


def work(kind, csv_path):
    """One measurement in this process: ``read`` or ``pipeline`` (read, predict, write)."""
    from mlpcli.data.table_rows import read_table_rows
    from mlpcli.prediction_file import open_prediction_file

    columns = [f"f{j}" for j in range(FEATURES)]
    model = StandInModel(np.random.default_rng(0))
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rows = 0
    t0 = time.perf_counter()
    table = read_table_rows(csv_path, columns, "label", chunk_rows=CHUNK_ROWS)
    if kind == "read":
        for chunk in table:
            rows += len(chunk.lines)
    else:
        out = os.path.join(os.path.dirname(csv_path), "predictions.csv")
        with open_prediction_file(out, class_names=model.class_names, n_outputs=model.n_outputs,
                                  task=model.task, overwrite=True) as predictions:
            for chunk in table:
                name = os.path.basename(csv_path)
                predictions.write([f"{name}:{line}" for line in chunk.lines.tolist()],
                                  model.outputs(chunk.x))
                rows += len(chunk.lines)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"rows": rows, "seconds": seconds, "baseline_mib": baseline / 1024,
            "increase_mib": (peak - baseline) / 1024}


def in_fresh_process(kind, csv_path, rows=0):
    """Run ``write_csv`` or ``work`` in a fresh process; ``work``'s result."""
    done = subprocess.run([sys.executable, __file__, "--worker", kind, csv_path, str(rows)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000, help="rows of the second file")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, path, rows = args.worker
        print(json.dumps(write_csv(path, int(rows)) if kind == "write" else work(kind, path)))
        return

    print(f"{FEATURES} float columns + a label column, chunks of {CHUNK_ROWS:,} rows, "
          f"stand-in model {FEATURES}-16-2 (softmax), predictions written as .csv")
    print(f"{'rows':>10} {'measured':<22}{'rows/s':>10}{'seconds':>9}{'RSS before MiB':>16}"
          f"{'peak increase MiB':>19}")
    with tempfile.TemporaryDirectory() as folder:
        for rows in (args.rows, args.small):
            path = os.path.join(folder, f"rows-{rows}.csv")
            in_fresh_process("write", path, rows)
            size = os.path.getsize(path) / 2**20
            for kind, what in (("read", "read"), ("pipeline", "read+predict+write")):
                r = in_fresh_process(kind, path)
                assert r["rows"] == rows
                print(f"{rows:>10,} {what:<22}{rows / r['seconds']:>10,.0f}{r['seconds']:>9.1f}"
                      f"{r['baseline_mib']:>16.0f}{r['increase_mib']:>19.1f}   ({size:.0f} MiB file)")
            os.unlink(path)


if __name__ == "__main__":
    main()
