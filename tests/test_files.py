"""Inputs the user names: FIFOs and devices refused at once, OS errors in one form, and no
NaN taken in (predict --npy) or given out (a model file's preprocessing, --json)."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from mlpcli import modelfile
from mlpcli.errors import ModelFileError

REPO = Path(__file__).resolve().parent.parent
QUICK = str(REPO / "configs" / "quick.yaml")


def mlp(*args):
    """``python -m mlpcli ARGS`` in the repository root; a child that blocks is killed."""
    return subprocess.run([sys.executable, "-m", "mlpcli", *map(os.fspath, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def refused(result, code, *words):
    everything = result.stdout + result.stderr
    assert result.returncode == code, everything
    assert "Traceback" not in everything, everything
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: "), everything
    for word in words:
        assert word in line, everything


@pytest.fixture
def fifos(tmp_path):
    """ff.png, ff.npy, ff.csv and ff.yaml, each a FIFO that no one ever writes to."""
    paths = {}
    for suffix in ("png", "npy", "csv", "yaml"):
        paths[suffix] = tmp_path / f"ff.{suffix}"
        os.mkfifo(paths[suffix])
    return paths


def test_fifos_named_as_inputs_are_refused_at_once(fifos, tiny_run, tmp_path):
    refused(mlp("predict", fifos["png"], "--run", tiny_run), 1, f"{fifos['png']}: is a FIFO")
    refused(mlp("predict", "--npy", fifos["npy"], "--run", tiny_run), 1, f"{fifos['npy']}: is a FIFO")
    refused(mlp("train", fifos["yaml"]), 1, f"{fifos['yaml']}: is a FIFO")
    result = mlp("train", QUICK, "--no-plots", "--runs-root", tmp_path / "runs", "--set", "data.dataset=csv",
                 "--set", f"data.path={fifos['csv']}", "--set", "model.input_shape=[4]")
    refused(result, 1, f"{fifos['csv']}: is a FIFO")
    assert not (tmp_path / "runs").exists()


def test_os_errors_on_input_paths_name_the_path(tiny_run, tmp_path):
    long = tmp_path / ("x" * 300)
    refused(mlp("train", f"{long}.yaml"), 1, f"{long}.yaml: File name too long")
    refused(mlp("predict", "--npy", f"{long}.npy", "--run", tiny_run), 1,
            f"{long}.npy: File name too long")
    refused(mlp("evaluate", "--model", f"{long}.h5"), 1, f"{long}.h5: File name too long")
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, symlinks=True)
    (run / "model.h5").unlink()
    (run / "model.h5").mkdir()  # click refuses a folder given as --model; a run's may be one
    refused(mlp("evaluate", run), 1, f"{run / 'model.h5'}: Is a directory")
    refused(mlp("predict", "--npy", f"{long}.npy", "--run", run), 1, f"{run / 'model.h5'}: Is a directory")


def test_predict_npy_refuses_non_finite_values(tiny_run, tmp_path):
    rows = np.zeros((3, 784), dtype=np.float32)
    rows[1, 5] = np.nan
    path = tmp_path / "nan.npy"
    np.save(path, rows)
    refused(mlp("predict", "--npy", path, "--run", tiny_run), 2, f"{path} holds nan at index (1, 5)")
    refused(mlp("predict", "--npy", path, "--run", tiny_run, "--json"), 2, "finite")
    beyond = np.zeros((2, 784))
    beyond[0, 5] = 1e39  # a float64 beyond float32: infinite once scaled
    np.save(path, beyond)
    refused(mlp("predict", "--npy", path, "--run", tiny_run), 2, f"{path} holds 1e+39 at index (0, 5)")


def test_predict_json_never_prints_nan(tiny_run, tmp_path):
    model = tmp_path / "huge.h5"
    shutil.copy(tiny_run / "model.h5", model)
    with h5py.File(model, "r+") as f:  # finite float32 weights whose products overflow
        kernels = []
        f.visititems(lambda name, obj: kernels.append(obj) if isinstance(obj, h5py.Dataset)
                     and obj.ndim == 2 and name.startswith("model_weights") else None)
        for kernel in kernels:
            kernel[...] = np.full(kernel.shape, 3e38, dtype=kernel.dtype)
    path = tmp_path / "ones.npy"
    np.save(path, np.ones((2, 784), dtype=np.float32))
    result = mlp("predict", "--npy", path, "--model", model, "--json")
    refused(result, 2, "ones.npy[0]: the model's outputs are not finite")
    assert "NaN" not in result.stdout


@pytest.mark.parametrize("scale, shown", [("NaN", "nan"), ("Infinity", "inf"), ("1e39", "1e+39")])
def test_model_file_with_non_finite_preprocessing_is_refused(tiny_run, tmp_path, scale, shown):
    model = tmp_path / "model.h5"
    shutil.copy(tiny_run / "model.h5", model)
    with h5py.File(model, "r+") as f:
        f["mlpcli/pipeline/scale"][()] = float(scale)
    with pytest.raises(ModelFileError, match=r"model\.h5: the input pipeline record \(mlpcli/pipeline\) has "
                                             r"scale values that are not finite in float32"):
        modelfile.load(model)
    with h5py.File(model, "r+") as f:  # a file written before the pipeline record: its preprocessing
        del f["mlpcli/pipeline"]
        f["mlpcli"].attrs["preprocessing"] = '{"scale": %s, "offset": 0.0}' % scale
    with pytest.raises(ModelFileError, match=rf"model\.h5: attribute mlpcli/preprocessing, 'scale' holds "
                                             rf"{re.escape(shown)}; it must be a finite float32 number"):
        modelfile.load(model)
    with h5py.File(model, "r+") as f:
        f["mlpcli"].attrs["preprocessing"] = json.dumps({"scale": 1.0, "offset": [[0.0, float("nan")]]})
    with pytest.raises(ModelFileError, match=r"'offset' holds nan at index \(0, 1\)"):
        modelfile.load(model)
    result = mlp("evaluate", "--model", model)
    refused(result, 2, f"{model}: attribute mlpcli/preprocessing")
