"""Where a training epoch's time goes, part by part, for configs/mnist-best.yaml's wide model
(784-1024-1024-10) and the seed model (configs/mnist.yaml), with one and two processes.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/profile_step.py
    python benchmarks/profile_step.py --configs mnist-best.yaml --processes 1 --cprofile
    python benchmarks/profile_step.py --configs mnist-best.yaml --processes 2 --pieces-vs-whole 12

Each model trains on 48,000 MNIST images as `mlp train` prepares them (uint8, scaled per
batch); after one warm-up epoch, one training epoch (no validation) is timed with the
parts of the step wrapped by timers here (training itself carries no instrumentation):

- gather: the batch's rows taken from the uint8 data and scaled to float32 (and the targets)
- forward products / backward products: a dense layer's forward (x @ kernel + bias) and
  backward (weight and input gradients, bias sum), less its activation
- activations: forward and backward of every activation (in dense layers or on their own)
- dropout: the mask draw and the multiplies, forward and backward
- loss: its value and gradient
- optimizer: the update of the weights (with several processes: of this process's share)
- mixing: with several processes, the row-weighted sum of the processes' gradients
- meetings: with several processes, the waits for the others (twice a step)
- other: the rest of the epoch (the loop, the bookkeeping, Python's calls)

With several processes the timers run in this process (rank 0); the helpers do the same
work on their rows. The matrix products' share of the machine's float32 matmul peak is
the epoch's product FLOPs (forward, weight and input gradients) over the epoch's time.

``--pieces-vs-whole N``: instead, N pairs of epochs (16,000 images each) of one trainer,
alternating the optimizer update in pieces (``mlpcli.nn.optimizers.PIECE``) with the update
of whole arrays (as before pieces: the piece set larger than any array), each pair measured
back to back on the machine as it is then.
"""

import argparse
import cProfile
import io
import math
import os
import pstats
import resource
import sys
import time
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, ".."))

from bench_train import blas_lines, epoch_flops, matmul_peak, mnist_split

from mlpcli.config import load_config

N_TRAIN = 48_000
PARTS = ("gather", "forward products", "backward products", "activations", "dropout", "loss",
         "optimizer", "mixing", "meetings", "other")


class Timers:
    """Seconds per part, of calls wrapped by ``wrap``; nested parts are subtracted from the outer."""

    def __init__(self):
        self.seconds = defaultdict(float)
        self.stack = []

    def wrap(self, part, fn):
        def timed(*args, **kwargs):
            self.stack.append(0.0)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.perf_counter() - t0
                inner = self.stack.pop()
                self.seconds[part] += spent - inner
                if self.stack:
                    self.stack[-1] += spent
        return timed


def instrument(trainer, timers):
    """Wrap the parts of ``trainer``'s step (instance attributes and class methods of this
    process only; nothing of mlpcli is changed for training)."""
    from dataclasses import replace

    from mlpcli.data.features import Features
    from mlpcli.nn import layers as layers_mod

    model = trainer.model
    for layer in model.layers:
        if isinstance(layer, layers_mod.Dense):
            layer.forward = timers.wrap("forward products", layer.forward)
            layer.backward = timers.wrap("backward products", layer.backward)
        elif isinstance(layer, layers_mod.Dropout):
            layer.forward = timers.wrap("dropout", layer.forward)
            layer.backward = timers.wrap("dropout", layer.backward)
        if hasattr(layer, "activation"):
            act = layer.activation
            layer.activation = replace(act, forward=timers.wrap("activations", act.forward),
                                       backward=timers.wrap("activations", act.backward))
    loss = trainer.loss
    for name in ("value", "grad", "fused_grad"):
        if getattr(loss, name, None) is not None:
            object.__setattr__(loss, name, timers.wrap("loss", getattr(loss, name)))
    for name in ("apply", "apply_in_pieces"):  # one process's update; several processes' (mixing inside)
        if hasattr(trainer.optimizer, name):
            setattr(trainer.optimizer, name, timers.wrap("optimizer", getattr(trainer.optimizer, name)))
    Features.take = timers.wrap("gather", Features.take)
    if trainer.parallel is not None:
        par = trainer.parallel
        par.wait = timers.wrap("meetings", par.wait)
        par._mixed_gradient = timers.wrap("mixing", par._mixed_gradient)


def profile(config, processes, use_cprofile):
    """(epoch seconds, {part: seconds}, n_train, layer sizes, cProfile text or None)."""
    from mlpcli.trainer import Trainer

    cfg = load_config(os.path.join(HERE, "..", "configs", config))
    cfg["data"]["validation_split"] = 0.2  # 48,000 training images for both models
    cfg["training"]["processes"] = processes
    streams, model, data = mnist_split(cfg)
    x, y = data.train
    assert len(x) == N_TRAIN, len(x)
    batch = cfg["training"]["batch_size"]
    trainer = Trainer(model, cfg, streams, math.ceil(len(x) / batch))
    trainer.run_epoch(x, y)  # warm-up
    trainer.end_epoch()
    timers = Timers()
    instrument(trainer, timers)
    profiler = cProfile.Profile() if use_cprofile else None
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0 = time.perf_counter()
    if profiler:
        profiler.enable()
    trainer.run_epoch(x, y)
    if profiler:
        profiler.disable()
    epoch = time.perf_counter() - t0
    parts = dict(timers.seconds)
    parts["page faults"] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    parts["other"] = epoch - sum(v for k, v in parts.items() if k != "page faults")
    sizes = [784] + [layer.config["units"] for layer in model.layers if "units" in layer.config]
    text = None
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(18)
        text = out.getvalue()
    return epoch, parts, len(x), sizes, text


def pieces_vs_whole(config, processes, pairs):
    """Seconds per epoch with the update in pieces and on whole arrays; the ratios of the pairs."""
    import numpy as np

    from mlpcli.nn import optimizers
    from mlpcli.trainer import Trainer

    cfg = load_config(os.path.join(HERE, "..", "configs", config))
    cfg["data"].update(validation_split=0.2, max_train_samples=16_000)
    cfg["training"]["processes"] = processes
    streams, model, data = mnist_split(cfg)
    x, y = data.train
    trainer = Trainer(model, cfg, streams, math.ceil(len(x) / cfg["training"]["batch_size"]))
    piece = optimizers.PIECE

    def use(size):  # the buffers a piece needs (helpers fork at each epoch and take them along)
        optimizers.PIECE = size
        trainer.optimizer.scratch = np.empty(min(size, model.trainable_size), np.float32)
        if trainer.parallel is not None:
            trainer.parallel.mixed = np.empty(min(size, model.trainable_size), np.float32)

    def epoch(size):
        use(size)
        t0 = time.perf_counter()
        trainer.run_epoch(x, y)
        trainer.end_epoch()
        return time.perf_counter() - t0

    epoch(piece)  # warm-up
    seconds = {"pieces": [], "whole": []}
    for i in range(pairs):
        for name in (("pieces", "whole") if i % 2 else ("whole", "pieces")):
            seconds[name].append(epoch(piece if name == "pieces" else 2 ** 62))
    use(piece)
    return seconds, [a / b for a, b in zip(seconds["pieces"], seconds["whole"])]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["mnist-best.yaml", "mnist.yaml"])
    parser.add_argument("--processes", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--cprofile", action="store_true", help="also cProfile the timed epoch (slows it)")
    parser.add_argument("--pieces-vs-whole", type=int, metavar="N",
                        help="instead: N pairs of epochs, the update in pieces against whole arrays")
    args = parser.parse_args()
    if args.pieces_vs_whole:
        import statistics

        for config in args.configs:
            for processes in args.processes:
                seconds, ratios = pieces_vs_whole(config, processes, args.pieces_vs_whole)
                quartiles = statistics.quantiles(ratios, n=4)
                print(f"{config}, processes {processes}: in pieces {statistics.median(seconds['pieces']):.3f} s, "
                      f"whole arrays {statistics.median(seconds['whole']):.3f} s a 16,000-image epoch; pieces/whole "
                      f"{statistics.median(ratios):.3f} (median of {len(ratios)} pairs, quartiles "
                      f"{quartiles[0]:.3f}-{quartiles[2]:.3f}); load {os.getloadavg()[0]:.2f}")
        return
    for line in blas_lines():
        print(line)
    peak = matmul_peak()
    print(f"float32 matmul peak {peak:.1f} GFLOP/s; load {os.getloadavg()[0]:.2f}")
    for config in args.configs:
        for processes in args.processes:
            epoch, parts, n, sizes, text = profile(config, processes, args.cprofile)
            flops = epoch_flops(n, 0, sizes)
            print(f"\n{config} {'-'.join(map(str, sizes))}, processes {processes}: epoch {epoch:.3f} s, "
                  f"{flops / 1e9:.0f} GFLOP of products, {flops / epoch / 1e9:.1f} GFLOP/s = "
                  f"{flops / epoch / 1e9 / peak:.1%} of peak")
            print(f"  {'part':<20}{'s/epoch':>9}{'share':>8}")
            for part in PARTS:
                if part in parts:
                    print(f"  {part:<20}{parts[part]:>9.3f}{parts[part] / epoch:>8.1%}")
            print(f"  (this process's minor page faults in the epoch: {parts['page faults']:,})")
            if text:
                print(text)


if __name__ == "__main__":
    main()
