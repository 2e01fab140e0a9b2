"""Accuracy on handwriting that is not MNIST: configs/mnist.yaml against configs/mnist-augmented.yaml.

    python benchmarks/bench_handwriting.py                    # trains both (seed 42), then scores them
    python benchmarks/bench_handwriting.py --seeds 42,1,2
    python benchmarks/bench_handwriting.py --runs runs/a runs/b   # score runs trained already

The set is benchmarks/handwriting/uci-digits.npz: 1,797 digits written by 43 people on
forms (the UCI "Optical Recognition of Handwritten Digits" set; see make_set.py there),
scanned at 32x32 and kept as 8x8 ink counts. Each is written out as a 32x32 PNG (the 8x8
counts enlarged smoothly, white ink on black) into class folders, and scored with
`mlp evaluate RUN --data FOLDER`, which prepares every image as `mlp predict` does (the
digit cropped, fitted into 20x20 and centred by its mass in 28x28, as MNIST's were).
The MNIST test accuracy of each run is reported beside it.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
CONFIGS = ("configs/mnist.yaml", "configs/mnist-augmented.yaml")


def write_set(folder):
    """The digits as 32x32 PNGs in ``folder``/<label>/; how many."""
    data = np.load(HERE / "handwriting" / "uci-digits.npz")
    for i, (counts, label) in enumerate(zip(data["x"], data["y"])):
        ink = Image.fromarray((counts.astype(np.float32) * (255 / 16)).round().astype(np.uint8))
        target = folder / str(label)
        target.mkdir(exist_ok=True)
        ink.resize((32, 32), Image.BILINEAR).save(target / f"{i:04d}.png")
    return len(data["y"])


def mlp(*args):
    result = subprocess.run([sys.executable, "-m", "mlpcli", *args], capture_output=True, text=True,
                            cwd=HERE.parent)
    if result.returncode:
        raise SystemExit(f"mlp {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def accuracy(run, data=None):
    report = json.loads(mlp("evaluate", str(run), "--json", *(["--data", str(data)] if data else [])))
    return report["metrics"]["accuracy"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="42", help="comma-separated seeds to train each config with")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated configs to train")
    parser.add_argument("--runs", nargs="*", help="run folders to score instead of training")
    parser.add_argument("--runs-root", default=None, help="where to train (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "uci-digits"
        folder.mkdir()
        print(f"non-MNIST handwriting: {write_set(folder)} digits from benchmarks/handwriting/uci-digits.npz")
        if args.runs:
            runs = {run: [Path(run)] for run in args.runs}
        else:
            root = Path(args.runs_root or Path(tmp) / "runs")
            runs = {}
            for config in args.configs.split(","):
                for seed in args.seeds.split(","):
                    run = root / f"{Path(config).stem}-seed{seed}"
                    mlp("train", config, "--set", f"seed={seed}", "--run-dir", str(run), "--quiet", "--no-plots")
                    runs.setdefault(config, []).append(run)
        print(f"{'model':<34}{'MNIST test':>12}{'UCI digits':>12}")
        for name, folders in runs.items():
            mnist = [accuracy(run) for run in folders]
            other = [accuracy(run, folder) for run in folders]
            print(f"{name:<34}{statistics.mean(mnist):>12.4f}{statistics.mean(other):>12.4f}"
                  + (f"   (seeds {args.seeds}: {', '.join(f'{a:.4f}' for a in other)})" if len(other) > 1 else ""))


if __name__ == "__main__":
    main()
