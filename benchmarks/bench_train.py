"""Training speed and memory of configs/mnist.yaml, side by side with PyTorch and scikit-learn.

    python benchmarks/bench_train.py                       # mlpcli alone
    python benchmarks/bench_train.py --compare torch,sklearn --repeats 3

Each measurement runs in a fresh process (so each has its own peak memory),
alternating mlpcli, PyTorch and scikit-learn, and the medians over repeats are
compared. Reported per system: wall time per epoch (training pass plus
validation, as `mlp train` does), training samples per second, the share of the
machine's float32 matrix-multiply peak that the epoch's matrix products reach
(the peak is measured in the same run with a large numpy matmul), and peak RSS.
`ours` trains as configs/mnist.yaml says (two processes share each batch),
`ours_1_process` the same with one. For scikit-learn's MLPClassifier (no
dropout) the comparison is with mlpcli on the same model without dropout,
training pass only (MLPClassifier validates nothing per epoch). The memory
comparison is of whole `mlp train` runs (with their helper processes, which
share the parent's data and weights: see work_mlp_train).

PyTorch (`pip install torch==2.13.0`, the CPU build) and scikit-learn are needed
only for --compare; neither is a dependency of mlpcli.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
BATCH, HIDDEN, DROPOUT = 128, 128, 0.3


def matmul_peak(size=2048, repeats=5):
    """float32 GFLOP/s of the best of several size x size matrix products."""
    a = np.random.default_rng(0).random((size, size), dtype=np.float32)
    b = np.random.default_rng(1).random((size, size), dtype=np.float32)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size ** 3 / best / 1e9


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def epoch_flops(n_train, n_val, sizes=(784, HIDDEN, HIDDEN, 10)):
    """Matrix-product FLOPs of one epoch: forward, weight and input gradients, validation."""
    forward = sum(2 * a * b for a, b in zip(sizes, sizes[1:]))
    input_grads = sum(2 * a * b for a, b in zip(sizes[1:], sizes[2:]))  # none for the first layer
    return n_train * (2 * forward + input_grads) + n_val * forward


def mnist_config(name="mnist.yaml"):
    from mlpcli.config import load_config

    return load_config(os.path.join(HERE, "..", "configs", name))


def mnist_split(cfg):
    """(random streams, model, ``TrainingData``) as `mlp train` prepares them for ``cfg``:
    the features stay uint8, scaled per batch."""
    from mlpcli.trainer import build_model, random_streams
    from mlpcli.training_data import prepare_data

    streams = random_streams(cfg["seed"])
    model = build_model(cfg, streams)
    return streams, model, prepare_data(cfg, model, streams["split"])


# -- workers: each runs in its own process and prints one JSON line ------------------------

def work_ours(epochs, dropout=True, validate=True, processes=None, config="mnist.yaml"):
    from mlpcli.callbacks import LearningRateSchedule, NanGuard
    from mlpcli.data import augment
    from mlpcli.fit_loop import Callback, FitLoop
    from mlpcli.trainer import Trainer

    class EpochTimes(Callback):
        """Each epoch's seconds, training pass and validation."""

        def __init__(self):
            self.seconds = []

        def on_epoch_begin(self, epoch):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs):
            self.seconds.append(time.perf_counter() - self.t0)

    cfg = mnist_config(config)
    if processes is not None:
        cfg["training"]["processes"] = processes
    if not dropout:
        cfg["model"]["layers"] = [l for l in cfg["model"]["layers"] if l["type"] != "dropout"]
    streams, model, data = mnist_split(cfg)
    trainer = Trainer(model, cfg, streams, math.ceil(len(data.train[0]) / BATCH),
                      augmenter=augment.from_config(cfg, data.feature_shape))
    times = EpochTimes()
    FitLoop(trainer, epochs, [NanGuard(trainer), LearningRateSchedule(trainer.schedule), times]).fit(
        data.train, data.val if validate else (None, None))
    return {"epoch_seconds": times.seconds, "n_train": len(data.train[0]),
            "n_val": len(data.val[0]) if validate else 0}


def work_augmented_pairs(epochs, interpolation=None):
    """configs/mnist.yaml and configs/mnist-augmented.yaml (the same model on augmented
    images) trained side by side in this process, an epoch of one, then an epoch of the
    other: each pair's ratio is measured on the machine as it is at that moment."""
    from mlpcli.callbacks import LearningRateSchedule, NanGuard
    from mlpcli.data import augment
    from mlpcli.fit_loop import FitLoop
    from mlpcli.trainer import Trainer

    loops = []
    for name in ("mnist.yaml", "mnist-augmented.yaml"):
        cfg = mnist_config(name)
        if cfg["augment"] and interpolation:
            cfg["augment"]["interpolation"] = interpolation
        streams, model, data = mnist_split(cfg)
        trainer = Trainer(model, cfg, streams, math.ceil(len(data.train[0]) / BATCH),
                          augmenter=augment.from_config(cfg, data.feature_shape))
        loops.append((FitLoop(trainer, cfg["training"]["epochs"], [NanGuard(trainer),
                                                                   LearningRateSchedule(trainer.schedule)]), data))
    seconds = {"plain": [], "augmented": []}
    for epoch in range(epochs):
        for (loop, data), name in zip(loops, seconds):
            loop.epochs, loop.finished = epoch + 1, False  # one more epoch of this one
            t0 = time.perf_counter()
            loop.fit(data.train, data.val)
            seconds[name].append(time.perf_counter() - t0)
    return seconds


def work_torch(epochs):
    import torch
    from torch import nn

    cfg = mnist_config()
    _, _, data = mnist_split(cfg)
    (x, y), (x_val, y_val) = data.train, data.val
    x, x_val = x[:], x_val[:]  # float32 arrays
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, HIDDEN), nn.ReLU(), nn.Dropout(DROPOUT),
                          nn.Linear(HIDDEN, HIDDEN), nn.ReLU(), nn.Dropout(DROPOUT),
                          nn.Linear(HIDDEN, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg["optimizer"]["learning_rate"], eps=1e-7)
    # the config's cosine decay (over the whole 20-epoch run), stepped per batch as mlpcli does
    decay_steps = cfg["schedule"]["decay_steps"] or cfg["training"]["epochs"] * math.ceil(len(x) / BATCH)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=decay_steps)
    loss_fn = nn.CrossEntropyLoss()
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
        batch_size=BATCH, shuffle=True)
    xv, yv = torch.from_numpy(x_val), torch.from_numpy(y_val)
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.train()
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
            schedule.step()
        model.eval()
        with torch.no_grad():
            (model(xv).argmax(1) == yv).float().mean().item()
        times.append(time.perf_counter() - t0)
    return {"epoch_seconds": times, "n_train": len(x), "n_val": len(x_val)}


def work_sklearn(epochs):
    import warnings

    from sklearn.neural_network import MLPClassifier

    cfg = mnist_config()
    _, _, data = mnist_split(cfg)
    x, y = data.train
    x = x[:]
    clf = MLPClassifier(hidden_layer_sizes=(HIDDEN, HIDDEN), solver="adam", batch_size=BATCH,
                        learning_rate_init=cfg["optimizer"]["learning_rate"], alpha=0.0, shuffle=True,
                        random_state=0)
    classes = np.arange(10)
    times = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(epochs):
            times.append(_timed(lambda: clf.partial_fit(x, y, classes=classes)))
    return {"epoch_seconds": times, "n_train": len(x), "n_val": 0}


def work_mlp_train(epochs):
    """A whole `mlp train configs/mnist.yaml` (for its peak memory).

    Its helper processes (training.processes) share most of the parent's memory, so
    the tree's memory is sampled as the sum of proportional set sizes (shared pages
    split between their holders) every 20 ms; the larger of that and the parent's own
    peak RSS is reported.
    """
    import tempfile
    import threading

    from mlpcli.train import train

    tree_peak, done, seen = [0], threading.Event(), set()

    def sample():
        while not done.wait(0.02):
            children = _children()
            total = sum(_pss_kib(pid) for pid in [os.getpid(), *children])
            if seen.issuperset(children):  # a child caught mid-fork reads as a second copy
                tree_peak[0] = max(tree_peak[0], total)
            seen.update(children)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with tempfile.TemporaryDirectory() as folder:
        t0 = time.perf_counter()
        train(os.path.join(HERE, "..", "configs", "mnist.yaml"), [f"training.epochs={epochs}"],
              run_dir=os.path.join(folder, "run"), quiet=True, plots=False)
        seconds = time.perf_counter() - t0
    done.set()
    sampler.join()
    return {"seconds": seconds, "tree_pss_mib": tree_peak[0] / 1024}


def _children():
    pids = []
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as f:
            pids += [int(p) for p in f.read().split()]
    return pids


def _pss_kib(pid):
    """Process ``pid``'s proportional set size in KiB (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return sum(int(line.split()[1]) for line in f if line.startswith("Pss:"))
    except OSError:
        return 0


def work_torch_whole(epochs):
    """The PyTorch loop as a whole process (for its peak memory)."""
    t0 = time.perf_counter()
    work_torch(epochs)
    return {"seconds": time.perf_counter() - t0}


WORKERS = {
    "ours": lambda e: work_ours(e),
    "ours_1_process": lambda e: work_ours(e, processes=1),
    "augmented_pairs": lambda e: work_augmented_pairs(e, os.environ.get("BENCH_INTERPOLATION")),
    "ours_nodropout_train": lambda e: work_ours(e, dropout=False, validate=False),
    "torch": work_torch,
    "sklearn": work_sklearn,
    "mlp_train": work_mlp_train,
    "torch_whole": work_torch_whole,
}


def run_worker(name, epochs, threads):
    """Run one worker in a fresh process; its JSON result plus its own peak RSS in MiB."""
    env = dict(os.environ)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
                   MKL_NUM_THREADS=str(threads))
    proc = subprocess.Popen([sys.executable, __file__, "--worker", name, "--epochs", str(epochs)],
                            stdout=subprocess.PIPE, env=env, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    out = proc.stdout.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"worker {name} failed")
    result = json.loads(out.strip().splitlines()[-1])
    # ru_maxrss of a process tree is its largest member's: see work_mlp_train for the tree's
    result["peak_rss_mib"] = max(usage.ru_maxrss / 1024, result.get("tree_pss_mib", 0))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per measurement (the first is warm-up)")
    parser.add_argument("--repeats", type=int, default=1, help="alternating rounds; medians are reported")
    parser.add_argument("--compare", default="", help="comma-separated: torch, sklearn")
    parser.add_argument("--augmented", action="store_true",
                        help="also the epoch time of configs/mnist-augmented.yaml (the same model on augmented "
                             "images) over configs/mnist.yaml's, epochs of the two alternating in one process")
    parser.add_argument("--interpolation", choices=("bilinear", "nearest"),
                        help="with --augmented: resample so instead of as the config says")
    parser.add_argument("--threads", type=int, default=None, help="BLAS/torch threads (default: all cores)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.interpolation:
        os.environ["BENCH_INTERPOLATION"] = args.interpolation  # the workers' environment
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args.epochs)))
        return

    others = [c for c in args.compare.split(",") if c]
    plan = ["ours", "ours_1_process"] + (["augmented_pairs"] if args.augmented else []) + \
        [{"torch": "torch", "sklearn": "sklearn"}[c] for c in others]
    if "sklearn" in others:
        plan.insert(plan.index("sklearn"), "ours_nodropout_train")
    if "torch" in others:
        plan += ["mlp_train", "torch_whole"]
    peak = matmul_peak()
    print(f"machine: {os.cpu_count()} cores, float32 matmul peak {peak:.1f} GFLOP/s (2048x2048, best of 5)")
    results = {name: [] for name in plan}
    for r in range(args.repeats):
        for name in plan:
            res = run_worker(name, args.epochs, args.threads)
            results[name].append(res)
            if name == "augmented_pairs":
                pairs = list(zip(res["plain"][1:], res["augmented"][1:]))  # the first pair warms up
                print(f"  round {r + 1} {name:<22} plain {statistics.median(p for p, _ in pairs):6.3f} s, "
                      f"augmented {statistics.median(a for _, a in pairs):6.3f} s, ratio "
                      f"{statistics.median(a / p for p, a in pairs):.2f}")
            elif "epoch_seconds" in res:
                steady = res["epoch_seconds"][1:] or res["epoch_seconds"]
                print(f"  round {r + 1} {name:<22} epoch {statistics.median(steady):6.3f} s   "
                      f"peak RSS {res['peak_rss_mib']:6.0f} MiB")
            else:
                print(f"  round {r + 1} {name:<22} whole run {res['seconds']:6.2f} s   "
                      f"peak RSS {res['peak_rss_mib']:6.0f} MiB")

    def epoch(name):
        return statistics.median(t for res in results[name] for t in (res["epoch_seconds"][1:] or res["epoch_seconds"]))

    def rss(name):
        return statistics.median(res["peak_rss_mib"] for res in results[name])

    print(f"\nmedians over {args.repeats} round(s), {args.epochs - 1 if args.epochs > 1 else 1} "
          f"timed epoch(s) each:")
    print(f"{'system':<24}{'s/epoch':>9}{'samples/s':>12}{'% of peak':>11}{'peak RSS MiB':>14}")
    for name in plan:
        res = results[name][0]
        if name == "augmented_pairs":
            continue
        if "epoch_seconds" not in res:
            print(f"{name:<24}{'':>9}{'':>12}{'':>11}{rss(name):>14.0f}")
            continue
        e = epoch(name)
        share = epoch_flops(res["n_train"], res["n_val"]) / e / 1e9 / peak if name != "sklearn" else \
            epoch_flops(res["n_train"], 0) / e / 1e9 / peak
        print(f"{name:<24}{e:>9.3f}{res['n_train'] / e:>12,.0f}{share:>10.1%}{rss(name):>14.0f}")
    if "torch" in others:
        print(f"\nmlpcli / PyTorch epoch time:        {epoch('ours') / epoch('torch'):.2f}  (target <= 0.5)")
        print(f"mlp train / PyTorch loop peak RSS:  {rss('mlp_train') / rss('torch_whole'):.2f}  (target <= 0.6)")
    if "sklearn" in others:
        print(f"mlpcli / scikit-learn epoch time:   {epoch('ours_nodropout_train') / epoch('sklearn'):.2f}  "
              "(target <= 0.7; both without dropout, training pass only)")
    if args.augmented:
        ratios = [a / p for res in results["augmented_pairs"] for p, a in zip(res["plain"][1:], res["augmented"][1:])]
        print(f"augmented / plain epoch time:       {statistics.median(ratios):.2f}  (median of {len(ratios)} "
              f"back-to-back pairs of epochs, quartiles {statistics.quantiles(ratios, n=4)[0]:.2f}-"
              f"{statistics.quantiles(ratios, n=4)[2]:.2f}; target <= 1.3)")
    e = epoch("ours")
    print(f"mlpcli share of matmul peak:        {epoch_flops(results['ours'][0]['n_train'], results['ours'][0]['n_val']) / e / 1e9 / peak:.1%}  (target >= 40%)")


if __name__ == "__main__":
    main()
