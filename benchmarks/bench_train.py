"""Benchmark: train configs/mnist.yaml and report time per epoch, throughput and memory.

    python benchmarks/bench_train.py [--epochs 3] [--config configs/mnist.yaml]

Prints, per epoch, the wall time of the training pass and of validation,
samples per second, and at the end the process's peak resident memory.
"""

import argparse
import resource
import time

import numpy as np

from mlpcli.config import load_config
from mlpcli.data import load_dataset, stratified_split
from mlpcli.training import Trainer, build_model, random_streams


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/mnist.yaml")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()

    cfg = load_config(args.config)
    streams = random_streams(cfg["seed"])
    data = load_dataset(cfg["data"])
    train_idx, val_idx = stratified_split(data.y_train, cfg["data"]["validation_split"], streams["split"])
    model = build_model(cfg, streams)
    shape = (-1, *model.input_shape)
    x, y = data.x_train[train_idx].reshape(shape), data.y_train[train_idx]
    x_val, y_val = data.x_train[val_idx].reshape(shape), data.y_train[val_idx]
    trainer = Trainer(model, cfg, streams)
    print(f"{args.config}: {model.count_params():,} params, {len(x):,} training and "
          f"{len(x_val):,} validation samples, batch {trainer.batch_size}")
    times = []
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        logs = trainer.run_epoch(x, y)
        t1 = time.perf_counter()
        val = trainer.evaluate(x_val, y_val)
        t2 = time.perf_counter()
        trainer.end_epoch(logs)
        times.append(t2 - t0)
        print(f"epoch {epoch}: {t2 - t0:6.2f} s (train {t1 - t0:.2f} s, validation {t2 - t1:.2f} s), "
              f"{len(x) / (t1 - t0):,.0f} samples/s, loss {logs['loss']:.4f}, "
              f"val_accuracy {val['accuracy']:.4f}")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"median epoch {np.median(times):.2f} s; peak RSS {peak_mib:,.0f} MiB")


if __name__ == "__main__":
    main()
