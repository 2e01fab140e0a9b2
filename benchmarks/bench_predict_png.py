"""How well `mlp predict` reads digits sent as PNGs, and how long one call takes.

    python benchmarks/bench_predict_png.py --run runs/<run> [--count 1000]

Turns the first COUNT MNIST test digits into PNG files the way people send them,
cycling through five kinds: dark ink on white (inverted), enlarged to 200-300 px,
as RGB, as RGBA ink on a transparent background, and off-centre on a 900x700
canvas. Then `mlp predict` reads the whole folder (the PNG path: cropping,
scaling, centring), the share of right answers is printed per kind and over all,
beside the model's accuracy on the same digits as arrays, and one
`mlp predict digit.png` is timed as a fresh process (median of 5).
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

KINDS = ("inverted", "enlarged", "rgb", "rgba", "off-centre")


def as_sent(digit, kind, rng):
    """An MNIST digit (28x28 uint8, white ink on black) as a PNG image of ``kind``."""
    ink_on_paper = 255 - digit
    size = int(rng.integers(200, 301))
    if kind == "inverted":
        return Image.fromarray(ink_on_paper)
    big = Image.fromarray(ink_on_paper).resize((size, size), Image.BILINEAR)
    if kind == "enlarged":
        return big
    if kind == "rgb":
        return big.convert("RGB")
    if kind == "rgba":
        alpha = Image.fromarray(digit).resize((size, size), Image.BILINEAR)
        black = Image.new("RGB", (size, size), (0, 0, 0))
        black.putalpha(alpha)
        return black
    canvas = Image.new("L", (900, 700), 255)
    canvas.paste(big, (int(rng.integers(0, 900 - size)), int(rng.integers(0, 700 - size))))
    return canvas


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="the run whose model.h5 predicts")
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args()

    from mlpcli.data import load_dataset
    from mlpcli.predict import predict

    data = load_dataset({"dataset": "mnist"}, scale=False)
    x, y = data.x_test[:args.count], data.y_test[:args.count]
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        names = []
        for i, (digit, label) in enumerate(zip(x, y)):
            kind = KINDS[i % len(KINDS)]
            name = f"{i:05d}_{kind}_{label}.png"
            as_sent(digit, kind, rng).save(os.path.join(folder, name))
            names.append(name)
        t0 = time.perf_counter()
        results = predict([folder], run_dir=args.run)
        seconds = time.perf_counter() - t0
        right = {kind: [] for kind in KINDS}
        for r in results:
            _, kind, label = Path(r.source).stem.split("_")
            right[kind].append(r.label == str(label))
        np.save(os.path.join(folder, "digits.npy"), x)
        as_arrays = [r.label == str(label) for r, label in
                     zip(predict(npy=os.path.join(folder, "digits.npy"), run_dir=args.run), y)]
        one = os.path.join(folder, names[0])
        calls = []
        for _ in range(5):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "mlpcli", "predict", one, "--run", args.run],
                           check=True, capture_output=True)
            calls.append(time.perf_counter() - t0)
    total = [ok for oks in right.values() for ok in oks]
    print(f"{len(total)} PNG digits from the MNIST test set, model {Path(args.run) / 'model.h5'}")
    for kind, oks in right.items():
        print(f"  {kind:<11} {np.mean(oks):7.1%} of {len(oks)}")
    print(f"  {'all':<11} {np.mean(total):7.1%}  ({seconds:.2f} s for the folder in one call)")
    print(f"the same digits as MNIST arrays (no PNG): {np.mean(as_arrays):.1%}")
    print(f"one `mlp predict digit.png` (a fresh process): {statistics.median(calls):.2f} s, median of 5")


if __name__ == "__main__":
    main()
