"""Training from a file larger than memory: configs/mnist.yaml's model on features mapped
from an .npy file (``data.dataset: npy``), against the same rows held in memory.

    python benchmarks/bench_mmap.py                  # 4,000,000 rows (3 GB), about 15 minutes
    python benchmarks/bench_mmap.py --rows 200000    # a quick version, about a minute

The data (MNIST's 60,000 training images repeated to ``--rows`` rows of 784 uint8
values, and their labels) is written as a folder of .npy files in a temporary folder,
deleted at the end. Each run is a fresh process that trains one epoch (the training pass
and the validation of configs/mnist.yaml's 20% split, as ``mlp train`` does) and reports
its seconds and its peak resident memory (VmHWM: the trainer's own, file pages it holds
included; the helper process that shares each batch is reported apart). ``memory`` holds
``--memory-rows`` of the rows in memory; ``mapped`` reads all ``--rows`` rows from the map;
``mapped_sorted`` is ``mapped`` with each batch's rows read in file order (then put back
in the batch's order: the same batch), to see whether ordered reads help. The runs
alternate (memory, mapped, mapped_sorted, memory, ...) over ``--repeats``; medians are
printed, with the load average.
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
VARIANTS = ("memory", "mapped", "mapped_sorted")


def write_data(folder, rows):
    """MNIST's training images and labels repeated to ``rows`` rows, as x_train.npy and y_train.npy."""
    from numpy.lib.format import open_memmap

    from mlpcli.data import load_dataset

    mnist = load_dataset({"dataset": "mnist"}, scale=False)
    images, labels = mnist.x_train.reshape(len(mnist.x_train), 784), mnist.y_train
    os.makedirs(folder)
    x = open_memmap(os.path.join(folder, "x_train.npy"), mode="w+", dtype=np.uint8, shape=(rows, 784))
    for start in range(0, rows, len(images)):
        stop = min(rows, start + len(images))
        x[start:stop] = images[:stop - start]
    x.flush()
    del x
    np.save(os.path.join(folder, "y_train.npy"), np.resize(labels, rows))


def peak_rss():
    """This process's peak resident memory in bytes (Linux's VmHWM)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def work(variant, folder, rows):
    """One epoch of configs/mnist.yaml on ``rows`` rows of the folder, as ``variant`` says."""
    from mlpcli.callbacks import LearningRateSchedule, NanGuard
    from mlpcli.config import load_config
    from mlpcli.data.features import Features
    from mlpcli.fit_loop import FitLoop
    from mlpcli.trainer import Trainer, build_model, random_streams
    from mlpcli.training_data import prepare_data

    cfg = load_config(os.path.join(HERE, "..", "configs", "mnist.yaml"))
    cfg["data"].update(dataset="npy", path=folder, scaling="unit", max_train_samples=rows)
    streams = random_streams(cfg["seed"])
    model = build_model(cfg, streams)
    data = prepare_data(cfg, model, streams["split"])
    (x, y), (x_val, y_val) = data.train, data.val
    if variant == "memory":  # the same rows, copied out of the map
        held = np.array(x.raw)  # a copy (np.ascontiguousarray would return the mapped array itself)
        x, x_val = (Features(held, data.preprocessing, model.input_shape, f.rows) for f in (x, x_val))
    elif variant == "mapped_sorted":
        read_in_file_order(Features)
    trainer = Trainer(model, cfg, streams, -(-len(x) // cfg["training"]["batch_size"]))
    t0 = time.perf_counter()
    FitLoop(trainer, 1, [NanGuard(trainer), LearningRateSchedule(trainer.schedule)]).fit((x, y), (x_val, y_val))
    return {"seconds": time.perf_counter() - t0, "rows": len(x), "val_rows": len(x_val), "peak_rss": peak_rss(),
            "helper_peak_rss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}


def read_in_file_order(features_class):
    """Make ``Features.take`` read each batch's rows in file order, then put them back in
    the batch's order (the batch is the same)."""
    take = features_class.take

    def sorted_take(self, idx, out):
        order = np.argsort(idx, kind="stable")
        take(self, idx[order], out[:len(idx)])
        out[order] = out[:len(idx)].copy()
        return out

    features_class.take = sorted_take


def run_child(variant, folder, rows):
    env = {**os.environ, "PYTHONPATH": os.path.join(HERE, "..")}
    out = subprocess.run([sys.executable, __file__, "--work", variant, "--folder", folder, "--rows", str(rows)],
                         capture_output=True, text=True, env=env, check=False)
    if out.returncode:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=4_000_000, help="rows in the mapped file")
    parser.add_argument("--memory-rows", type=int, default=None,
                        help="rows held in memory (default: --rows, at most 1,000,000)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--tmp", default=None, help="where to write the data (default: the system's temp folder)")
    parser.add_argument("--work", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.work:
        print(json.dumps(work(args.work, args.folder, args.rows)))
        return
    memory_rows = args.memory_rows or min(args.rows, 1_000_000)
    root = tempfile.mkdtemp(prefix="bench-mmap-", dir=args.tmp)
    try:
        folder = os.path.join(root, "data")
        t0 = time.perf_counter()
        write_data(folder, args.rows)
        print(f"wrote {args.rows:,} rows x 784 uint8 ({args.rows * 784 / 2**30:.2f} GiB) in "
              f"{time.perf_counter() - t0:.0f} s; load: {os.getloadavg()[0]:.2f}", flush=True)
        results = {v: [] for v in args.variants.split(",")}
        for repeat in range(args.repeats):
            for variant, runs in results.items():
                rows = memory_rows if variant == "memory" else args.rows
                r = run_child(variant, folder, rows)
                runs.append(r)
                print(f"  {variant:14s} {r['rows']:>10,} training rows: {r['seconds']:7.1f} s, "
                      f"{r['seconds'] / (r['rows'] + r['val_rows']) * 1e6:6.2f} us/row, peak RSS "
                      f"{r['peak_rss'] / 2**20:6.0f} MiB (helper {r['helper_peak_rss'] / 2**20:4.0f} MiB); load {os.getloadavg()[0]:.2f}", flush=True)
        print("medians:")
        per_row = {}
        for variant, rs in results.items():
            per_row[variant] = statistics.median(r["seconds"] / (r["rows"] + r["val_rows"]) for r in rs)
            print(f"  {variant:14s} epoch {statistics.median(r['seconds'] for r in rs):7.1f} s, "
                  f"{per_row[variant] * 1e6:6.2f} us/row, peak RSS "
                  f"{statistics.median(r['peak_rss'] for r in rs) / 2**20:6.0f} MiB")
        if "memory" in per_row:
            for variant, seconds in per_row.items():
                if variant != "memory":
                    print(f"  {variant} / memory, time per row: {seconds / per_row['memory']:.2f}x")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
