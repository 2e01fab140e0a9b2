"""Random search vs TPE with pruning, against a grid's best, on one stated space, in trial-epochs.

The model: 784 - dense(units, relu) - dropout(rate) - dense(10, softmax), Adam, on the
first 4,000 MNIST training images (20% held out for validation: 800 images), 6 epochs per
trial, one BLAS thread per trial, 2 workers. The space (4 keys):

    optimizer.learning_rate  1e-4 .. 1e-1  (log)
    model.layers[0].units    16 .. 256     (log, integer)
    model.layers[1].rate     0 .. 0.6      (dropout)
    training.batch_size      32 .. 512     (log, integer)

The grid (7 rates at half-decades x 3 widths x 2 dropout rates x 2 batch sizes, 84 trials)
is run once; its best validation loss is the target. Random search and TPE (median pruning;
Hyperband too with --hyperband) each run --trials trials over the ranges, for each of
--seeds seeds. Per method and --tolerance (2% and 5%) a table says: how many seeds reached the target
(best val_loss so far within the tolerance, relative, of the grid's best), the median and range of the
trial-epochs spent until then (epochs actually trained, summed over the trials in trial
order), the median and range of the best val_loss within the budget, and the trial-epochs
all its trials took (median per seed). Trial-epochs do not depend on the machine's speed.

The whole benchmark: 30 trials per search, seeds 0..4 (8 minutes with --hyperband on 2 busy cores).
--quick: 3,000 images (600 validation), a 4 x 2 x 2 x 2 grid (32 trials), 20 trials, seeds
0..2 (2-3 minutes; a smoke test: its coarse grid is an easy target). Prints Markdown tables
and the command.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_tuning.py [--quick]
"""

import argparse
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlpcli.runs import RESULTS_FILE as RUN_RESULTS
from mlpcli.runs import read_json
from mlpcli.sweep import sweep
from mlpcli.sweep_folder import read_results

BASE = {
    "name": "tuning-bench", "seed": 0,
    "data": {"dataset": "mnist", "validation_split": 0.2},
    "model": {"input_shape": [784], "layers": [
        {"type": "dense", "units": 64, "activation": "relu"},
        {"type": "dropout", "rate": 0.2},
        {"type": "dense", "units": 10, "activation": "softmax"}]},
    "loss": "sparse_categorical_crossentropy", "optimizer": "adam", "metrics": ["accuracy"],
    "training": {"batch_size": 128, "threads": 1},
}
RANGES = ["optimizer.learning_rate=1e-4:1e-1:log", "model.layers[0].units=16:256:log",
          "model.layers[1].rate=0:0.6", "training.batch_size=32:512:log"]
GRID = {
    "full": ["optimizer.learning_rate=0.0001,0.000316,0.001,0.00316,0.01,0.0316,0.1",
             "model.layers[0].units=16,64,256", "model.layers[1].rate=0,0.4", "training.batch_size=32,256"],
    "quick": ["optimizer.learning_rate=0.0001,0.001,0.01,0.1", "model.layers[0].units=32,128",
              "model.layers[1].rate=0,0.4", "training.batch_size=64,256"],
}
SIZES = {"full": (4000, 6, 30, list(range(5))), "quick": (3000, 6, 20, list(range(3)))}  # images, epochs, trials, seeds


def trial_curve(folder):
    """[(epochs trained, best val_loss)] per trial of a sweep folder, in trial order (a failed
    trial: 0 epochs, inf)."""
    out = []
    for row in read_results(folder):
        if row["status"] not in ("ok", "pruned"):
            out.append((0, float("inf")))
            continue
        out.append((read_json(folder / row["trial"] / RUN_RESULTS)["epochs_run"], float(row["best_value"])))
    return out


def epochs_to(curve, target, tolerance):
    """Trial-epochs spent until the best value so far is within ``tolerance`` of ``target``; None when never."""
    spent, best = 0, float("inf")
    for epochs, value in curve:
        spent += epochs
        best = min(best, value)
        if best <= target * (1 + tolerance):
            return spent
    return None


def spread(values, fmt):
    """``median (low-high)`` of ``values``; "-" when there are none."""
    if not values:
        return "-"
    return f"{fmt(statistics.median(values))} ({fmt(min(values))}-{fmt(max(values))})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--trials", type=int, default=None, help="trials per search (30; --quick 20)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="the searches' seeds (0..4; --quick 0..2)")
    parser.add_argument("--tolerance", type=float, nargs="+", default=[0.02, 0.05],
                        help="relative, of the grid's best: one table each (0.02 0.05)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--hyperband", action="store_true", help="also TPE with Hyperband pruning")
    parser.add_argument("--no-prune", action="store_true", help="also TPE without pruning")
    parser.add_argument("--runs-root", help="keep the sweep folders here (default: a temporary folder)")
    args = parser.parse_args()
    size = "quick" if args.quick else "full"
    samples, epochs, trials, seeds = SIZES[size]
    trials, seeds = args.trials or trials, args.seeds or seeds
    methods = [("random", {"search": "random"}), ("tpe + median", {"search": "tpe", "prune": "median"})]
    if args.hyperband:
        methods.append(("tpe + hyperband", {"search": "tpe", "prune": "hyperband"}))
    if args.no_prune:
        methods.append(("tpe, no pruning", {"search": "tpe", "prune": "none"}))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.runs_root or tmp)
        config = Path(tmp) / "tuning-bench.yaml"
        config.write_text(yaml.safe_dump({**BASE, "data": {**BASE["data"], "max_train_samples": samples},
                                          "training": {**BASE["training"], "epochs": epochs}}))

        def run(name, **search):
            result = sweep(str(config), workers=args.workers, runs_root=str(root / name), plots=False,
                           quiet=True, **search)
            return trial_curve(result.folder)

        grid = run("grid", grid=GRID[size])
        target = min(v for _, v in grid)
        curves = {name: [run(f"{name}-{seed}".replace(" ", "").replace(",", ""), ranges=RANGES, trials=trials,
                             seed=seed, **search) for seed in seeds] for name, search in methods}
    minutes = (time.perf_counter() - started) / 60
    print(f"Space: {', '.join(RANGES)}; a dense-dropout-softmax MLP, Adam, on "
          f"{samples:,} MNIST images (20% validation), {epochs} epochs per trial.\n"
          f"Grid ({len(grid)} trials: {'; '.join(GRID[size])}): best val_loss {target:.4f} in "
          f"{sum(e for e, _ in grid)} trial-epochs. {trials} trials per search, seeds "
          f"{' '.join(map(str, seeds))}.")
    for tolerance in args.tolerance:
        print(f"\nTarget: within {tolerance:.0%} of the grid's best (val_loss <= {target * (1 + tolerance):.4f})\n")
        print("| method | seeds reaching the target | trial-epochs to target, median (range) | "
              "best val_loss, median (range) | trial-epochs per search, median |")
        print("|---|---|---|---|---|")
        for name, found in curves.items():
            reached = [r for r in (epochs_to(c, target, tolerance) for c in found) if r is not None]
            print(f"| {name} | {len(reached)}/{len(found)} | {spread(reached, lambda v: f'{v:g}')} | "
                  f"{spread([min(v for _, v in c) for c in found], lambda v: f'{v:.4f}')} | "
                  f"{statistics.median(sum(e for e, _ in c) for c in found):g} |")
    tolerance = args.tolerance[0]
    print(f"\nPer seed: trial-epochs to within {tolerance:.0%} (- when never) / best val_loss / trial-epochs in all\n")
    print("| method | " + " | ".join(f"seed {s}" for s in seeds) + " |")
    print("|---|" + "---|" * len(seeds))
    for name, found in curves.items():
        cells = [f"{epochs_to(c, target, tolerance) or '-'} / {min(v for _, v in c):.4f} / "
                 f"{sum(e for e, _ in c)}" for c in found]
        print(f"| {name} | " + " | ".join(cells) + " |")
    command = " ".join(["python", "benchmarks/bench_tuning.py", *map(shlex.quote, sys.argv[1:])])
    print(f"\n`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE {command}` took {minutes:.1f} minutes "
          f"with {args.workers} workers.")


if __name__ == "__main__":
    main()
