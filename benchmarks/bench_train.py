"""Training speed and memory of configs/mnist.yaml, side by side with PyTorch, JAX and scikit-learn.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_train.py   # mlpcli alone
    ... bench_train.py --compare torch,jax,sklearn --repeats 3
    ... bench_train.py --width 1024 --compare torch,jax          # the wide model
    ... bench_train.py --cost-table --compare torch --plot cost.png

Each measurement runs in a fresh process (so each has its own peak memory),
alternating mlpcli, PyTorch, JAX and scikit-learn, and the medians over repeats are
compared. Reported per system: wall time per epoch (training pass plus
validation, as `mlp train` does; the first epoch of each process is a warm-up and
not counted, which for JAX is also where its step compiles), training samples per second, the share of the
machine's float32 matrix-multiply peak that the epoch's matrix products reach
(the peak is measured in the same run with a large numpy matmul), and peak RSS.
The output starts with the BLAS numpy uses (threadpoolctl) and warns when
OPENBLAS_CORETYPE or OPENBLAS_L2_SIZE is set (here they force an older kernel with
about half the matmul peak).
`ours` trains as the config says (configs/mnist.yaml: two processes share each batch;
its peak memory is the summed proportional set size of the process and its helpers),
`ours_1_process` the same with one. --config names another file of configs/,
--width sets the hidden dense layers' units, --batch the batch size.

The PyTorch and JAX loops (benchmarks/train_references.py) are what a careful user of
each writes: the uint8 features kept as stored, a seeded permutation of the indices
sliced per batch (torch.randperm with a seeded generator), each batch gathered by
indexing and scaled to float32 there, the config's model, Adam, schedule, dropout and
epochs, validation after every epoch. PyTorch runs torch.set_num_threads(cores) (or
--threads); no DataLoader(TensorDataset), which fetches one sample at a time. JAX jits the
whole training step (Adam written out); its compile time is in the warm-up epoch, not in
the figures (it is printed apart).
For scikit-learn's MLPClassifier (no
dropout) the comparison is with mlpcli on the same model without dropout,
training pass only (MLPClassifier validates nothing per epoch). The memory
comparison with PyTorch is also of whole `mlp train` runs (with their helper processes, which
share the parent's data and weights: see work_mlp_train).

--cost-table measures mlpcli and each --compare system (torch, jax) over hidden widths
128, 512, 1024, 2048 and batch sizes 32, 128, 512 (--widths, --batches pick a subset),
2 epochs per process by default (one warm-up, one timed), and prints a Markdown table:
seconds per epoch, share of the matmul peak and peak RSS per system; --plot FILE draws
time per epoch against width (log-log), one line per system and batch size. The whole
table should take about 8 minutes on 2 quiet cores with --compare torch and 13 with
--compare torch,jax (estimated from the per-epoch figures of issue #16: width 2048 is most
of it); on busy cores many times that, so --widths/--batches run a subset.

PyTorch (`pip install torch==2.13.0`, the CPU build), JAX (`pip install "jax[cpu]"`) and
scikit-learn are needed only for --compare, each imported only by its own worker; none is
a dependency of mlpcli.
"""

import argparse
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import time

import numpy as np
from process_memory import TreeMemory

HERE = os.path.dirname(os.path.abspath(__file__))
CORES = len(os.sched_getaffinity(0))
# environment variables that make OpenBLAS pick an older kernel or cache blocking (set on this machine)
KERNEL_FORCING = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
# issue #16's goals for the two models it names (hidden widths): mlpcli's epoch time over each
# reference's at most, and the share of the matmul peak at least
TARGETS = {(128, 128): {"torch": 0.20, "peak": 0.40}, (1024, 1024): {"torch": 0.30, "jax": 0.7, "peak": 0.55}}


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


def blas_lines():
    """What numpy's BLAS is (threadpoolctl), and a warning per variable forcing an older OpenBLAS kernel."""
    from threadpoolctl import threadpool_info

    lines = [f"BLAS: {pool['internal_api']} {pool['version']}, kernel "
             f"{pool.get('architecture') or pool.get('corename') or '?'}, {pool['num_threads']} thread(s) "
             f"({os.path.basename(pool['filepath'])})" for pool in threadpool_info() if pool["user_api"] == "blas"]
    lines += [f"WARNING: {name}={os.environ[name]} is set: OpenBLAS then uses an older kernel or its cache "
              f"sizes, about half the matmul peak here; measure as users run it: env -u {' -u '.join(KERNEL_FORCING)} "
              f"python {sys.argv[0]} ..." for name in KERNEL_FORCING if name in os.environ]
    return lines or ["BLAS: none found by threadpoolctl"]


def epoch_flops(n_train, n_val, sizes):
    """Matrix-product FLOPs of one epoch through dense layers of ``sizes`` (inputs, then each
    layer's units): forward, weight and input gradients, validation."""
    forward = sum(2 * a * b for a, b in itertools.pairwise(sizes))
    input_grads = sum(2 * a * b for a, b in itertools.pairwise(sizes[1:]))  # none for the first layer
    return n_train * (2 * forward + input_grads) + n_val * forward


def overrides(args):
    """The ``--set`` overrides of --width (every dense layer but the output) and --batch."""
    from mlpcli.config import load_config

    sets = [f"training.batch_size={args.batch}"] if args.batch else []
    if args.width:
        dense = [i for i, layer in enumerate(load_config(config_path(args))["model"]["layers"])
                 if layer["type"] == "dense"]
        sets += [f"model.layers[{i}].units={args.width}" for i in dense[:-1]]
    return sets


def config_path(args):
    return os.path.join(HERE, "..", "configs", args.config)


def configured(args):
    """The resolved config the measurement trains: --config with --width and --batch."""
    from mlpcli.config import load_config

    return load_config(config_path(args), overrides(args))


def layer_sizes(cfg):
    """(inputs, each dense layer's units) of a resolved config."""
    return (math.prod(cfg["model"]["input_shape"]),
            *(layer["units"] for layer in cfg["model"]["layers"] if layer["type"] == "dense"))


def mnist_split(cfg):
    """(random streams, model, ``TrainingData``) as `mlp train` prepares them for ``cfg``:
    the features stay uint8, scaled per batch."""
    from mlpcli.trainer import build_model, random_streams
    from mlpcli.training_data import prepare_data

    streams = random_streams(cfg["seed"])
    model = build_model(cfg, streams)
    return streams, model, prepare_data(cfg, model, streams["split"])


# -- workers: each runs in its own process and prints one JSON line ------------------------

def work_ours(args, dropout=True, validate=True, processes=None):
    from mlpcli.callbacks import LearningRateSchedule, NanGuard
    from mlpcli.data import augment
    from mlpcli.fit_loop import Callback, FitLoop
    from mlpcli.trainer import Trainer

    class EpochTimes(Callback):
        """Each epoch's seconds, training pass and validation."""

        def __init__(self):
            self.seconds, self.accuracies = [], []

        def on_epoch_begin(self, epoch):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs):
            self.seconds.append(time.perf_counter() - self.t0)
            self.accuracies.append(logs.get("val_accuracy"))

    cfg = configured(args)
    if processes is not None:
        cfg["training"]["processes"] = processes
    if not dropout:
        cfg["model"]["layers"] = [l for l in cfg["model"]["layers"] if l["type"] != "dropout"]
    streams, model, data = mnist_split(cfg)
    trainer = Trainer(model, cfg, streams, math.ceil(len(data.train[0]) / cfg["training"]["batch_size"]),
                      augmenter=augment.from_config(cfg, data.feature_shape))
    times = EpochTimes()
    with TreeMemory(0.05) as memory:  # helper processes (training.processes) share the parent's pages
        FitLoop(trainer, args.epochs, [NanGuard(trainer), LearningRateSchedule(trainer.schedule), times]).fit(
            data.train, data.val if validate else (None, None))
    return {"epoch_seconds": times.seconds, "val_accuracy": times.accuracies, "n_train": len(data.train[0]),
            "n_val": len(data.val[0]) if validate else 0, "tree_pss_mib": memory.peak_mib}


def work_augmented_pairs(args):
    """configs/mnist.yaml and configs/mnist-augmented.yaml (the same model on augmented
    images) trained side by side in this process, an epoch of one, then an epoch of the
    other: each pair's ratio is measured on the machine as it is at that moment."""
    from mlpcli.callbacks import LearningRateSchedule, NanGuard
    from mlpcli.config import load_config
    from mlpcli.data import augment
    from mlpcli.fit_loop import FitLoop
    from mlpcli.trainer import Trainer

    loops = []
    for name in ("mnist.yaml", "mnist-augmented.yaml"):
        cfg = load_config(os.path.join(HERE, "..", "configs", name))
        if cfg["augment"] and args.interpolation:
            cfg["augment"]["interpolation"] = args.interpolation
        streams, model, data = mnist_split(cfg)
        trainer = Trainer(model, cfg, streams, math.ceil(len(data.train[0]) / cfg["training"]["batch_size"]),
                          augmenter=augment.from_config(cfg, data.feature_shape))
        loops.append((FitLoop(trainer, cfg["training"]["epochs"], [NanGuard(trainer),
                                                                   LearningRateSchedule(trainer.schedule)]), data))
    seconds = {"plain": [], "augmented": []}
    for epoch in range(args.epochs):
        for (loop, data), name in zip(loops, seconds):
            loop.epochs, loop.finished = epoch + 1, False  # one more epoch of this one
            t0 = time.perf_counter()
            loop.fit(data.train, data.val)
            seconds[name].append(time.perf_counter() - t0)
    return seconds


def reference(args):
    """The config's model, optimizer and data as the reference loops take them."""
    from train_references import from_config

    cfg = configured(args)
    return from_config(cfg, mnist_split(cfg)[2])


def work_torch(args):
    import torch
    from train_references import torch_loop

    ref = reference(args)
    seconds, accuracies = torch_loop(ref, args.epochs, args.threads or CORES)
    return {"epoch_seconds": seconds, "val_accuracy": accuracies, "n_train": len(ref.train[0]),
            "n_val": len(ref.val[0]), "version": f"PyTorch {torch.__version__}"}


def work_jax(args):
    import jax
    from train_references import jax_loop

    ref = reference(args)
    seconds, accuracies = jax_loop(ref, args.epochs)
    return {"epoch_seconds": seconds, "val_accuracy": accuracies, "n_train": len(ref.train[0]),
            "n_val": len(ref.val[0]), "version": f"JAX {jax.__version__}"}


def work_sklearn(args):
    import warnings

    import sklearn
    from sklearn.neural_network import MLPClassifier

    cfg = configured(args)
    _, _, data = mnist_split(cfg)
    x, y = data.train
    x = x[:]
    clf = MLPClassifier(hidden_layer_sizes=layer_sizes(cfg)[1:-1], solver="adam",
                        batch_size=cfg["training"]["batch_size"], learning_rate_init=cfg["optimizer"]["learning_rate"],
                        alpha=0.0, shuffle=True, random_state=0)
    classes = np.arange(10)
    times = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(args.epochs):
            times.append(_timed(lambda: clf.partial_fit(x, y, classes=classes)))
    return {"epoch_seconds": times, "n_train": len(x), "n_val": 0, "version": f"scikit-learn {sklearn.__version__}"}


def work_mlp_train(args):
    """A whole `mlp train` of the config (for its peak memory), its helper processes included."""
    import tempfile

    from mlpcli.train import train

    with TreeMemory(0.02) as memory, tempfile.TemporaryDirectory() as folder:
        t0 = time.perf_counter()
        train(config_path(args), [f"training.epochs={args.epochs}", *overrides(args)],
              run_dir=os.path.join(folder, "run"), quiet=True, plots=False)
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "tree_pss_mib": memory.peak_mib}


def work_torch_whole(args):
    """The PyTorch loop as a whole process (for its peak memory)."""
    t0 = time.perf_counter()
    work_torch(args)
    return {"seconds": time.perf_counter() - t0}


WORKERS = {
    "ours": work_ours,
    "ours_1_process": lambda args: work_ours(args, processes=1),
    "augmented_pairs": work_augmented_pairs,
    "ours_nodropout_train": lambda args: work_ours(args, dropout=False, validate=False),
    "torch": work_torch,
    "jax": work_jax,
    "sklearn": work_sklearn,
    "mlp_train": work_mlp_train,
    "torch_whole": work_torch_whole,
}
COMPARED = ("torch", "jax", "sklearn")  # --compare's choices, each a worker


def run_worker(name, args, width=None, batch=None):
    """Run one worker in a fresh process (with --width/--batch ``width``/``batch`` when
    given); its JSON result plus its own peak RSS in MiB."""
    env = dict(os.environ)
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads),
                   MKL_NUM_THREADS=str(args.threads))
    command = [sys.executable, __file__, "--worker", name, "--epochs", str(args.epochs), "--config", args.config]
    for option, value in (("--width", width or args.width), ("--batch", batch or args.batch),
                          ("--threads", args.threads), ("--interpolation", args.interpolation)):
        command += [option, str(value)] if value else []
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, env=env, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    out = proc.stdout.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"worker {name} failed")
    result = json.loads(out.strip().splitlines()[-1])
    # ru_maxrss of a process tree is its largest member's: TreeMemory sums the tree's
    result["peak_rss_mib"] = max(usage.ru_maxrss / 1024, result.get("tree_pss_mib", 0))
    return result


def steady(res):
    """A result's epoch times after the warm-up epoch (all of them when there is one)."""
    return res["epoch_seconds"][1:] or res["epoch_seconds"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs per measurement, the first a warm-up (default 3; 2 with --cost-table)")
    parser.add_argument("--repeats", type=int, default=1, help="alternating rounds; medians are reported")
    parser.add_argument("--compare", default="", help=f"comma-separated: {', '.join(COMPARED)}")
    parser.add_argument("--config", default="mnist.yaml", help="a file of configs/ (default mnist.yaml)")
    parser.add_argument("--width", type=int, help="units of every hidden dense layer (default: the config's)")
    parser.add_argument("--batch", type=int, help="batch size (default: the config's)")
    parser.add_argument("--cost-table", action="store_true",
                        help="mlpcli and the --compare systems (torch, jax) over --widths x --batches")
    parser.add_argument("--widths", default="128,512,1024,2048", help="with --cost-table (default 128,512,1024,2048)")
    parser.add_argument("--batches", default="32,128,512", help="with --cost-table (default 32,128,512)")
    parser.add_argument("--plot", help="with --cost-table: write time per epoch against width (PNG) here")
    parser.add_argument("--augmented", action="store_true",
                        help="also the epoch time of configs/mnist-augmented.yaml (the same model on augmented "
                             "images) over configs/mnist.yaml's, epochs of the two alternating in one process")
    parser.add_argument("--interpolation", choices=("bilinear", "nearest"),
                        help="with --augmented: resample so instead of as the config says")
    parser.add_argument("--threads", type=int, default=None,
                        help="BLAS/torch threads (default: all cores; JAX uses XLA's pool over all cores)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.compare = [c for c in args.compare.split(",") if c]
    unknown = set(args.compare) - set(COMPARED)
    if unknown:
        parser.error(f"--compare: unknown {', '.join(sorted(unknown))}; choose from {', '.join(COMPARED)}")
    if args.cost_table and "sklearn" in args.compare:
        parser.error("--cost-table compares with torch and jax, not sklearn")
    if args.epochs is None:
        args.epochs = 2 if args.cost_table else 3
    return args


def main():
    args = parse_args()
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args)))
        return
    for line in blas_lines():
        print(line)
    peak = matmul_peak()
    print(f"machine: {CORES} cores, float32 matmul peak {peak:.1f} GFLOP/s (2048x2048, best of 5); "
          f"load average {os.getloadavg()[0]:.2f}")
    if args.cost_table:
        cost_table(args, peak)
    else:
        compare(args, peak)


def cost_table(args, peak):
    """mlpcli and each --compare system over --widths x --batches (see cost_table.py)."""
    from cost_table import run_cost_table

    widths = [int(w) for w in args.widths.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    print(f"cost table: {args.config} (training.processes {configured(args)['training']['processes']}) with "
          f"hidden widths {widths} and batches {batches}; {args.epochs} epoch(s) per process, the first a warm-up"
          f"{' (for JAX: where it compiles)' if 'jax' in args.compare else ''}; medians over {args.repeats} round(s)")

    def measure(system, width, batch):
        res = run_worker(system, args, width, batch)
        cell = argparse.Namespace(**{**vars(args), "width": width, "batch": batch})
        return {"seconds": steady(res), "first": res["epoch_seconds"][0], "peak_rss_mib": res["peak_rss_mib"],
                "version": res.get("version", "mlpcli"),
                "flops": epoch_flops(res["n_train"], res["n_val"], layer_sizes(configured(cell)))}

    run_cost_table(["ours", *args.compare], widths, batches, args.repeats, measure, peak, args.plot)


def compare(args, peak):
    """The config's model (with --width, --batch) on mlpcli and each --compare system."""
    others = args.compare
    plan = ["ours", "ours_1_process"] + (["augmented_pairs"] if args.augmented else []) + others
    if "sklearn" in others:
        plan.insert(plan.index("sklearn"), "ours_nodropout_train")
    if "torch" in others:
        plan += ["mlp_train", "torch_whole"]
    sizes = layer_sizes(configured(args))
    print(f"model: {'-'.join(map(str, sizes))}, batch {args.batch or configured(args)['training']['batch_size']}")
    results = {name: [] for name in plan}
    for r in range(args.repeats):
        for name in plan:
            res = run_worker(name, args)
            results[name].append(res)
            if name == "augmented_pairs":
                pairs = list(zip(res["plain"][1:], res["augmented"][1:]))  # the first pair warms up
                print(f"  round {r + 1} {name:<22} plain {statistics.median(p for p, _ in pairs):6.3f} s, "
                      f"augmented {statistics.median(a for _, a in pairs):6.3f} s, ratio "
                      f"{statistics.median(a / p for p, a in pairs):.2f}")
            elif "epoch_seconds" in res:
                accuracy = (res.get("val_accuracy") or [None])[-1]  # none without validation
                print(f"  round {r + 1} {name:<22} epoch {statistics.median(steady(res)):6.3f} s   "
                      f"peak RSS {res['peak_rss_mib']:6.0f} MiB   first epoch {res['epoch_seconds'][0]:6.3f} s"
                      + (f"   val_accuracy {accuracy:.4f}" if accuracy is not None else "")
                      + f"   {res.get('version', '')}")
            else:
                print(f"  round {r + 1} {name:<22} whole run {res['seconds']:6.2f} s   "
                      f"peak RSS {res['peak_rss_mib']:6.0f} MiB")

    def epoch(name):
        return statistics.median(t for res in results[name] for t in steady(res))

    def rss(name):
        return statistics.median(res["peak_rss_mib"] for res in results[name])

    def share(name):
        res = results[name][0]
        return epoch_flops(res["n_train"], res["n_val"], sizes) / epoch(name) / 1e9 / peak

    print(f"\nmedians over {args.repeats} round(s), {max(args.epochs - 1, 1)} timed epoch(s) each"
          + (" (JAX: compile time excluded, it is in the warm-up epoch)" if "jax" in others else "") + ":")
    print(f"{'system':<24}{'s/epoch':>9}{'samples/s':>12}{'% of peak':>11}{'peak RSS MiB':>14}")
    for name in plan:
        res = results[name][0]
        if name == "augmented_pairs":
            continue
        if "epoch_seconds" not in res:
            print(f"{name:<24}{'':>9}{'':>12}{'':>11}{rss(name):>14.0f}")
            continue
        print(f"{name:<24}{epoch(name):>9.3f}{res['n_train'] / epoch(name):>12,.0f}{share(name):>10.1%}"
              f"{rss(name):>14.0f}")
    targets = TARGETS.get(sizes[1:-1], {})
    for name in ("torch", "jax"):
        if name in others:
            goal = f"  (target <= {targets[name]})" if name in targets else ""
            print(f"mlpcli / {results[name][0]['version']} epoch time: {epoch('ours') / epoch(name):.2f}{goal}")
    if "torch" in others:
        print(f"mlp train / PyTorch loop peak RSS:  {rss('mlp_train') / rss('torch_whole'):.2f}  (target <= 0.6)")
    if "sklearn" in others:
        print(f"mlpcli / scikit-learn epoch time:   {epoch('ours_nodropout_train') / epoch('sklearn'):.2f}  "
              "(target <= 0.7; both without dropout, training pass only)")
    if args.augmented:
        ratios = [a / p for res in results["augmented_pairs"] for p, a in zip(res["plain"][1:], res["augmented"][1:])]
        print(f"augmented / plain epoch time:       {statistics.median(ratios):.2f}  (median of {len(ratios)} "
              f"back-to-back pairs of epochs, quartiles {statistics.quantiles(ratios, n=4)[0]:.2f}-"
              f"{statistics.quantiles(ratios, n=4)[2]:.2f}; target <= 1.3)")
    goal = f"  (target >= {targets['peak']:.0%})" if "peak" in targets else ""
    print(f"mlpcli share of matmul peak:        {share('ours'):.1%}{goal}")


if __name__ == "__main__":
    main()
