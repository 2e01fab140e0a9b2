"""How long `mlp` takes to start: whole-process time of `mlp --help` and of
`mlp predict digit.png`, against `python -c pass` (the interpreter's floor) and the import of
the libraries predict cannot do without (numpy, h5py, Pillow, click: mlpcli's floor).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_startup.py [--run runs/<run>] [--repeats 20]

Without --run, first trains configs/quick.yaml into a temporary folder. The digit is the
first MNIST test image, saved as a PNG. A first, untimed round compiles mlpcli's modules to
.pyc files (as pip install does; PYTHONDONTWRITEBYTECODE is dropped for the commands). The
commands are run in turn, REPEATS rounds (alternating, so that a change in the machine's load
falls on all alike), each a fresh process of this checkout (`python -m mlpcli`); prints the
median and quartiles of each, wall time and the process's CPU time (less disturbed by other
processes), as a Markdown table, then the 10 imports of `mlp predict digit.png` with the
largest cumulative time (`python -X importtime`, one run), and the machine's load average.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOP_IMPORTS = 10
LIBRARIES = "import numpy, h5py, PIL.Image, PIL.PngImagePlugin, click"  # what predict needs


def train_quick(folder):
    run_dir = Path(folder) / "run"
    subprocess.run([sys.executable, "-m", "mlpcli", "train", str(ROOT / "configs" / "quick.yaml"),
                    "--run-dir", str(run_dir), "-q", "--no-plots"], check=True)
    return run_dir


def write_digit(path):
    from PIL import Image

    from mlpcli.data import load_dataset

    digit = load_dataset({"dataset": "mnist"}, scale=False).x_test[0]
    Image.fromarray(digit.reshape(28, 28)).save(path)


def run_times(commands, repeats, env):
    """{name: ([wall s], [CPU s])} of each command (a name -> argv dict) over ``repeats``
    alternating rounds; the CPU time is the process's, user and system, all its threads."""
    times = {name: ([], []) for name in commands}
    for _ in range(repeats):
        for name, argv in commands.items():
            t0 = time.perf_counter()
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
            stderr = proc.stderr.read()
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t0
            if status:
                raise SystemExit(f"`{name}` failed: {stderr.decode(errors='replace')}")
            times[name][0].append(wall)
            times[name][1].append(usage.ru_utime + usage.ru_stime)
    return times


def slowest_imports(argv, env, count):
    """(cumulative µs, self µs, module) of the ``count`` imports with the most cumulative time."""
    done = subprocess.run([sys.executable, "-X", "importtime", *argv[1:]], check=True, capture_output=True,
                          text=True, env=env, cwd=ROOT)
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        own, cumulative, module = line.removeprefix("import time:").split("|")
        rows.append((int(cumulative), int(own), module.strip()))
    return sorted(rows, reverse=True)[:count]


def quartiles(values):
    return statistics.quantiles(values, n=4)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=None, help="the run whose model.h5 predicts (default: train quick.yaml)")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    env = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as folder:
        run_dir = Path(args.run).resolve() if args.run else train_quick(folder)
        digit = Path(folder) / "digit.png"
        write_digit(digit)
        mlp = [sys.executable, "-m", "mlpcli"]
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            f'python -c "{LIBRARIES}"': [sys.executable, "-c", LIBRARIES],
            "mlp --help": [*mlp, "--help"],
            "mlp predict digit.png": [*mlp, "predict", str(digit), "--run", str(run_dir)],
        }
        run_times(commands, 1, env)  # writes the .pyc files, as pip install does for a user
        times = run_times(commands, args.repeats, env)
        imports = slowest_imports(commands["mlp predict digit.png"], env, TOP_IMPORTS)

    print(f"`{' '.join(['python', *sys.argv])}`  ({args.repeats} alternating rounds; "
          f"load average {os.getloadavg()[0]:.2f} at the end)\n")
    print("| command | wall: median s | quartiles s | CPU: median s | quartiles s |")
    print("|---|---|---|---|---|")
    for name, (wall, cpu) in times.items():
        (w1, wall_median, w3), (c1, cpu_median, c3) = quartiles(wall), quartiles(cpu)
        print(f"| `{name}` | {wall_median:.3f} | {w1:.3f} - {w3:.3f} | {cpu_median:.3f} | {c1:.3f} - {c3:.3f} |")
    print(f"\nThe {TOP_IMPORTS} slowest imports of `mlp predict digit.png` (`python -X importtime`, one run):\n")
    print("| module | cumulative ms | self ms |")
    print("|---|---|---|")
    for cumulative, own, module in imports:
        print(f"| `{module}` | {cumulative / 1000:.1f} | {own / 1000:.1f} |")
    if any(name in os.environ for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")):
        print("\nWarning: OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are set; run with "
              "`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE` to measure as a user gets it.")


if __name__ == "__main__":
    main()
