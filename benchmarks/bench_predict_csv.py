"""How fast new rows in a CSV file are read and predicted, and that memory stays flat.

    python benchmarks/bench_predict_csv.py [--rows 1000000] [--small 100000]

Writes (in a temporary folder) a CSV file of ROWS rows of 30 float columns and a
label column, and one of SMALL rows. Each step runs in a fresh process, so each
measurement has its own peak memory (Linux carries ru_maxrss over an exec, so
the parent, which forks them, stays small): reading the file alone through
read_table_rows, a chunk at a time; and ``mlp predict``'s stage on it (the
model's Predictor prepares each chunk, a 30-16-2 MLP predicts it, the
predictions go to a .csv file). Reported: rows per second, and the peak RSS over the
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


def write_model(path):
    """A 30-16-2 MLP (random weights: the speed does not depend on them) whose model file
    records a table pipeline of columns f0..f29 with standardize scaling, as ``mlp train``
    on such a CSV would."""
    from mlpcli import modelfile
    from mlpcli.nn.model import Sequential
    from mlpcli.pipeline import InputPipeline

    model = Sequential([{"type": "dense", "units": 16, "activation": "relu"},
                        {"type": "dense", "units": 2, "activation": "softmax"}],
                       (FEATURES,)).build(np.random.default_rng(0))
    rng = np.random.default_rng(1)
    pipeline = InputPipeline(kind="table", feature_shape=(FEATURES,), scaling="standardize",
                             scale=rng.uniform(0.5, 2, FEATURES).astype(np.float32),
                             offset=rng.uniform(-1, 1, FEATURES).astype(np.float32), class_names=["no", "yes"],
                             columns=[f"f{j}" for j in range(FEATURES)], label_column="label")
    modelfile.save(path, model, pipeline=pipeline)


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
    from mlpcli.predict import predict

    columns = [f"f{j}" for j in range(FEATURES)]
    model = os.path.join(os.path.dirname(csv_path), "model.h5")
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rows = 0
    t0 = time.perf_counter()
    table = read_table_rows(csv_path, columns, "label", chunk_rows=CHUNK_ROWS)
    if kind == "read":
        for chunk in table:
            rows += len(chunk.lines)
    else:
        table.close()
        out = os.path.join(os.path.dirname(csv_path), "predictions.csv")
        # what `mlp predict ROWS.csv --model model.h5 --out predictions.csv --overwrite` runs
        rows = predict([csv_path], model_path=model, out=out, overwrite=True, chunk_rows=CHUNK_ROWS).count
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
        if kind == "write":
            write_csv(path, int(rows))
            write_model(os.path.join(os.path.dirname(path), "model.h5"))
        print(json.dumps(None if kind == "write" else work(kind, path)))
        return

    print(f"{FEATURES} float columns + a label column, chunks of {CHUNK_ROWS:,} rows, "
          f"a {FEATURES}-16-2 MLP (softmax, standardize scaling), predictions written as .csv")
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
