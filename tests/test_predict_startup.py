"""`mlp predict digit.png` starts with only what its answer needs (issue 16, start-up): no
YAML, no config check, no data loaders or their download code, no scoring, no plotting. The
time itself is measured by benchmarks/bench_startup.py, not here."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from mlpcli.images import median

ROOT = Path(__file__).resolve().parents[1]
# Modules that `mlp predict digit.png` does not need, each a measured share of its start-up.
NOT_NEEDED = (
    "matplotlib", "tqdm", "yaml",  # plots, progress bars, config files
    "http.client", "urllib.request", "ssl",  # downloading data sets
    "numpy.ma",  # np.median's NaN check (images.median)
    "numpy.random",  # a model read from a file draws no initial weights
    "statistics",  # ranking a sweep's trials
    "mlpcli.config", "mlpcli.config_check", "mlpcli.nn.optimizers",  # checking a config
    "mlpcli.data.builtin", "mlpcli.data.image_folder", "mlpcli.data.npz",  # loading data sets
    "mlpcli.nn.metrics", "mlpcli.evaluation_curves",  # scoring (mlp evaluate)
    "mlpcli.ranking", "mlpcli.plots",
)
NEEDED = ("numpy", "h5py", "PIL.Image", "click", "mlpcli.modelfile", "mlpcli.images")
# Runs the CLI in this interpreter, then prints which of the modules it names were loaded.
LOADED_AFTER_CLI = ("import sys\nfrom mlpcli.cli import main\n"
                    "try:\n    main(sys.argv[2:])\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
                    "print(' '.join(m for m in sys.argv[1].split(',') if m in sys.modules))")


def loaded_modules(args, names, cwd):
    """The ``names`` a fresh interpreter has loaded after running ``mlp ARGS``, and its output."""
    done = subprocess.run([sys.executable, "-c", LOADED_AFTER_CLI, ",".join(names), *map(str, args)],
                          check=False, capture_output=True, text=True, timeout=120, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    *answer, loaded = done.stdout.splitlines()
    return loaded.split(), answer


def write_digit(path):
    """A white "1" on black, 28x28, as a PNG."""
    pixels = np.zeros((28, 28), np.uint8)
    pixels[5:23, 12:16] = 255
    Image.fromarray(pixels).save(path)


def test_predicting_a_digit_loads_only_what_the_answer_needs(tiny_run, tmp_path):
    write_digit(tmp_path / "digit.png")
    loaded, answer = loaded_modules(["predict", "digit.png", "--run", tiny_run], NOT_NEEDED + NEEDED, tmp_path)
    assert len(answer) == 1 and answer[0].startswith("digit.png ") and "top:" in answer[0]
    assert sorted(loaded) == sorted(NEEDED)


def test_evaluate_still_checks_the_config_a_model_file_stores(tiny_run, tmp_path):
    """Predictor.config is checked when first used, as mlp evaluate uses it; predicting through
    the recorded input pipeline needs none of it."""
    model = tmp_path / "model.h5"
    shutil.copy(tiny_run / "model.h5", model)
    with h5py.File(model, "r+") as f:
        f["mlpcli"].attrs["config"] = f["mlpcli"].attrs["config"].replace(
            '"sparse_categorical_crossentropy"', '"no_such_loss"')
    done = subprocess.run([sys.executable, "-m", "mlpcli", "evaluate", "--model", str(model), "--data",
                           str(write_npz(tmp_path / "rows.npz"))],
                          check=False, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2, done.stderr
    assert "the mlpcli config stored in the file is not valid" in done.stderr and "no_such_loss" in done.stderr


def write_npz(path):
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.integers(0, 256, (20, 784)).astype(np.uint8), y=rng.integers(0, 10, 20))
    return path


@given(hnp.arrays(st.sampled_from([np.float32, np.float64]), st.integers(1, 60),
                  elements=st.floats(width=32)))
def test_median_is_numpys(values):
    expected = float(np.median(values))
    assert median(values) == expected or (np.isnan(expected) and np.isnan(median(values)))
