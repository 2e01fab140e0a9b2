"""Grid vs random search vs TPE (with median pruning) on one space, in trial-epochs.

The space: configs/quick.yaml (784-64-10 MLP) on 3,000 MNIST images (10% held out),
8 epochs per trial, over optimizer.learning_rate 1e-4..1e-1 (log) and the hidden units
16..128. The grid (4 rates x 3 widths, 12 trials) gives the target: its best validation
loss. Random search and TPE (median pruning; Hyperband with --hyperband) each run
--trials trials, for each of --seeds seeds, and report:

* trial-epochs until the best validation loss so far first came within --tolerance
  (relative) of the grid's best (epochs actually trained, summed over trials in trial
  order; "-" when never), and
* the best validation loss each reached, and the trial-epochs all its trials took.

--quick: 2,000 images, 5 epochs, 8 trials, seeds 0 and 1. Prints a Markdown table.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_tuning.py --quick
"""

import argparse
import csv
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlpcli.sweep import sweep

GRID = ["optimizer.learning_rate=0.0001,0.001,0.01,0.1", "model.layers[0].units=16,48,128"]
RANGES = ["optimizer.learning_rate=1e-4:1e-1:log", "model.layers[0].units=16:128"]


def trial_curve(folder):
    """[(epochs trained, best val_loss)] per trial, in trial order."""
    out = []
    with open(folder / "results.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["status"] not in ("ok", "pruned"):
                out.append((0, float("inf")))
                continue
            results = json.loads((folder / row["trial"] / "results.json").read_text())
            out.append((results["epochs_run"], float(row["best_value"])))
    return out


def run(root, sets, workers, **search):
    result = sweep(str(ROOT / "configs/quick.yaml"), overrides=sets, workers=workers, runs_root=str(root),
                   plots=False, quiet=True, **search)
    return trial_curve(result.folder)


def epochs_to(curve, target, tolerance):
    spent, best = 0, float("inf")
    for epochs, value in curve:
        spent += epochs
        best = min(best, value)
        if best <= target * (1 + tolerance):
            return spent
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--tolerance", type=float, default=0.02)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--hyperband", action="store_true", help="also TPE with Hyperband pruning")
    args = parser.parse_args()
    samples, epochs = (2000, 5) if args.quick else (3000, 8)
    trials = args.trials or (8 if args.quick else 12)
    seeds = args.seeds or ([0, 1] if args.quick else [0, 1, 2])
    sets = [f"data.max_train_samples={samples}", f"training.epochs={epochs}", "training.threads=1"]
    methods = [("random", {"search": "random"}), ("tpe + median", {"search": "tpe", "prune": "median"})]
    if args.hyperband:
        methods.append(("tpe + hyperband", {"search": "tpe", "prune": "hyperband"}))
    with tempfile.TemporaryDirectory() as tmp:
        grid = run(Path(tmp) / "grid", sets, args.workers, grid=GRID)
        target = min(v for _, v in grid)
        print(f"Space: quick.yaml on {samples} MNIST images, {epochs} epochs; learning rate 1e-4..1e-1 "
              f"(log), units 16..128. Grid 4x3: best val_loss {target:.4f} in "
              f"{sum(e for e, _ in grid)} trial-epochs. Target: within {args.tolerance:.0%}.\n")
        print("| method | seed | trials | trial-epochs to target | best val_loss | trial-epochs in all |")
        print("|---|---|---|---|---|---|")
        summary = {}
        for name, search in methods:
            for seed in seeds:
                curve = run(Path(tmp) / f"{name}-{seed}".replace(" ", ""), sets, args.workers,
                            ranges=RANGES, trials=trials, seed=seed, **search)
                reached = epochs_to(curve, target, args.tolerance)
                summary.setdefault(name, []).append((reached, min(v for _, v in curve), sum(e for e, _ in curve)))
                print(f"| {name} | {seed} | {trials} | {reached if reached is not None else '-'} | "
                      f"{min(v for _, v in curve):.4f} | {sum(e for e, _ in curve)} |", flush=True)
        print("\n| method | reached target | median trial-epochs to target | mean best val_loss | mean trial-epochs |")
        print("|---|---|---|---|---|")
        for name, found in summary.items():
            reached = [r for r, _, _ in found if r is not None]
            print(f"| {name} | {len(reached)}/{len(found)} | "
                  f"{statistics.median(reached) if reached else '-'} | "
                  f"{statistics.mean(b for _, b, _ in found):.4f} | {statistics.mean(e for _, _, e in found):.1f} |")


if __name__ == "__main__":
    main()
