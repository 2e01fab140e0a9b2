"""Data larger than memory: features read through a memory map of their file (an .npy, or
an .npz member stored without compression) train as the same rows held in memory do."""

import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import interrupt_and_resume, same_weights

from mlpcli.cli import main
from mlpcli.data import load_dataset
from mlpcli.data.features import Features
from mlpcli.data.mapped import is_mapped, take_rows
from mlpcli.data.npy import read_npy
from mlpcli.data.npz import load_npz
from mlpcli.errors import DataError, MlpError


def mnist_arrays(rows):
    data = load_dataset({"dataset": "mnist", "max_train_samples": rows}, scale=False)
    return {"x_train": data.x_train.reshape(rows, 784), "y_train": data.y_train,
            "x_test": data.x_test[:100].reshape(100, 784), "y_test": data.y_test[:100]}


def save(arrays, folder, kind):
    """``arrays`` as ``kind``: a folder of .npy files, a stored .npz or a compressed one."""
    if kind == "npy":
        folder.mkdir()
        for name, array in arrays.items():
            np.save(folder / f"{name}.npy", array)
        return folder
    path = folder.with_suffix(".npz")
    (np.savez if kind == "npz" else np.savez_compressed)(path, **arrays)
    return path


def dataset_settings(path, kind):
    return ["--set", f"data.dataset={'npy' if kind == 'npy' else 'npz'}", "--set", f"data.path={path}",
            "--set", "data.scaling=unit", "--set", "data.validation_split=0.2"]


def train(run_dir, *settings):
    result = CliRunner().invoke(main, ["train", "configs/quick.yaml", "--run-dir", str(run_dir), "-q", "--no-plots",
                                       "--set", "training.epochs=2", *settings])
    assert result.exit_code == 0, result.output
    return run_dir / "model.h5"


@pytest.fixture(scope="module")
def arrays():
    return mnist_arrays(600)


@pytest.mark.parametrize("kind", ["npy", "npz"])
def test_the_features_are_mapped_unless_compressed(tmp_path, arrays, kind):
    mapped = load_npz(save(arrays, tmp_path / "d", kind), folder=kind == "npy")
    compressed = load_npz(save(arrays, tmp_path / "c", "compressed"))
    assert is_mapped(mapped.x_train) and is_mapped(mapped.x_test) and not is_mapped(mapped.y_train)
    assert not is_mapped(compressed.x_train)
    np.testing.assert_array_equal(mapped.x_train, compressed.x_train)


@pytest.mark.parametrize("processes", [1, 2])
def test_mapped_training_gives_the_weights_of_training_in_memory(tmp_path, arrays, processes):
    workers = ["--set", f"training.processes={processes}"]
    in_memory = train(tmp_path / "memory", *dataset_settings(save(arrays, tmp_path / "c", "compressed"), "npz"),
                      *workers)
    for kind in ("npy", "npz"):
        data = save(arrays, tmp_path / f"data-{kind}", kind)
        mapped = train(tmp_path / f"run-{kind}", *dataset_settings(data, kind), *workers)
        assert same_weights(mapped, in_memory), kind


@pytest.mark.slow
def test_mapped_training_resumes_bit_exactly(tmp_path):
    data = save(mnist_arrays(12000), tmp_path / "data", "npy")
    settings = [*dataset_settings(data, "npy"), "--set", "training.epochs=3", "--set", "training.processes=1",
                "--no-plots", "-q"]
    whole = tmp_path / "whole"
    done = subprocess.run([sys.executable, "-m", "mlpcli", "train", "configs/mnist.yaml", "--run-dir", str(whole),
                           *settings], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    cut = tmp_path / "cut"
    interrupt_and_resume(cut, settings, after_epoch=1)  # 9,600 training rows: epoch 2 outlasts the signal
    assert same_weights(cut / "model.h5", whole / "model.h5")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="Linux's /proc says what is resident")
def test_reading_a_mapped_file_leaves_none_of_it_resident(tmp_path):
    rows = 16 * 2**20 // 784
    np.save(tmp_path / "x.npy", np.arange(rows * 784, dtype=np.uint8).reshape(rows, 784))
    features = Features(read_npy(tmp_path / "x.npy", mapped=True), {"scale": 1.0, "offset": 0.0}, [784])
    before = file_backed_bytes()
    for idx in np.array_split(np.random.default_rng(0).permutation(rows), rows // 64):
        features.take(idx, np.empty((len(idx), 784), np.float32))
    for start in range(0, rows, 4096):
        features[start:start + 4096]
    assert file_backed_bytes() - before < 2**20  # the 16 MiB file was read twice over


def file_backed_bytes():
    """This process's resident file-backed memory (Linux's /proc/self/statm, third field)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[2]) * os.sysconf("SC_PAGE_SIZE")


def test_a_truncated_npy_is_a_one_line_error_naming_the_file(tmp_path, arrays):
    data = save(arrays, tmp_path / "data", "npy")
    whole = (data / "x_train.npy").read_bytes()
    (data / "x_train.npy").write_bytes(whole[:len(whole) // 2])
    result = CliRunner().invoke(main, ["train", "configs/quick.yaml", "--run-dir", str(tmp_path / "run"), "-q",
                                       "--no-plots", *dataset_settings(data, "npy")])
    assert result.exit_code == 2, result.output
    assert f"{data / 'x_train.npy'}: the header claims shape (600, 784)" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    with pytest.raises(DataError, match="but only"):
        load_npz(data, folder=True)


def test_predict_reads_mapped_rows_in_chunks_as_it_reads_them_in_memory(tmp_path, tiny_run, monkeypatch):
    from mlpcli.predict import predict
    from mlpcli.predictor import Predictor

    x = mnist_arrays(600)["x_test"]
    np.save(tmp_path / "rows.npy", x)
    np.savez(tmp_path / "stored.npz", x=x)
    np.savez_compressed(tmp_path / "compressed.npz", x=x)
    predictor = Predictor.open(tiny_run)
    whole = predictor.outputs(predictor.prepare(x, "x"))

    def predicted(name):
        predict([str(tmp_path / name)], run_dir=tiny_run, out=str(tmp_path / f"{name}-out.npy"), chunk_rows=32)
        return np.load(tmp_path / f"{name}-out.npy")

    in_memory = predicted("compressed.npz")
    np.testing.assert_allclose(in_memory, whole, rtol=1e-5, atol=1e-7)  # other batch sizes, other roundings
    monkeypatch.setattr("mlpcli.data.npy.available_memory", lambda: 1000)  # features read whole would not fit
    for name in ("rows.npy", "stored.npz"):
        np.testing.assert_array_equal(predicted(name), in_memory, err_msg=name)
    with pytest.raises(DataError, match="more than the 0.0 GiB of memory available"):
        predict([str(tmp_path / "compressed.npz")], run_dir=tiny_run, out=str(tmp_path / "refused.npy"))


def test_evaluate_scores_a_mapped_file_in_chunks_as_one_held_in_memory(tmp_path, tiny_run, monkeypatch):
    from mlpcli import evaluate as evaluate_mod

    arrays = mnist_arrays(600)
    tests = {"x_test": arrays["x_test"], "y_test": arrays["y_test"]}
    np.savez_compressed(tmp_path / "compressed.npz", **tests)
    np.savez(tmp_path / "stored.npz", **tests)
    whole = evaluate_mod.evaluate(tiny_run, data=str(tmp_path / "compressed.npz")).report
    monkeypatch.setattr(evaluate_mod, "PREDICT_CHUNK_ROWS", 32)
    monkeypatch.setattr("mlpcli.data.npy.available_memory", lambda: 1000)  # the labels fit, the features would not
    chunked = evaluate_mod.evaluate(tiny_run, data=str(tmp_path / "stored.npz")).report
    assert chunked["samples"] == whole["samples"] == 100
    assert chunked["confusion_matrix"] == whole["confusion_matrix"]
    assert chunked["loss"] == pytest.approx(whole["loss"], rel=1e-6)
    assert chunked["metrics"] == pytest.approx(whole["metrics"], rel=1e-6)


def test_an_npy_dataset_is_a_folder_whose_headers_give_the_input_shape(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    np.save(folder / "x_train.npy", np.zeros((50, 6, 5), np.uint8))
    np.save(folder / "y_train.npy", np.zeros(50, np.int64))
    base = ["train", "configs/quick.yaml", "--dry-run", "--set", "data.dataset=npy", "--set", "model.input_shape=null"]
    result = CliRunner().invoke(main, [*base, "--set", f"data.path={folder}"])
    assert result.exit_code == 2
    assert f"model.input_shape [6, 5] was inferred from {folder}" in result.output
    result = CliRunner().invoke(main, [*base, "--set", f"data.path={folder / 'x_train.npy'}"])
    assert result.exit_code == 2
    assert f"Error: {folder / 'x_train.npy'}: not a folder (of .npy files: x_train.npy, y_train.npy" in result.output


@pytest.mark.parametrize("kind", ["npy", "npz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_shuffled_rows_read_from_the_file_are_the_rows_of_the_map(tmp_path, kind, dtype):
    x = np.arange(300 * 6, dtype=dtype).reshape(300, 2, 3)  # rows of 2x3: a view of the file's rows
    path = save({"x_train": x, "y_train": np.zeros(300, np.int64)}, tmp_path / "d", kind)
    mapped = load_npz(path, folder=kind == "npy").x_train
    features = Features(mapped, {"scale": 1.0, "offset": 0.0}, [2, 3], rows=np.arange(299, -1, -1))
    idx = np.random.default_rng(0).permutation(300)[:77]
    np.testing.assert_array_equal(features.take_raw(idx), x[::-1][idx])
    out = np.empty((77, 2, 3), np.float32)
    np.testing.assert_array_equal(features.take(idx, out), x[::-1][idx].astype(np.float32))


def test_a_file_cut_short_while_training_reads_is_an_error_naming_it(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1000, 784), np.uint8))
    features = Features(read_npy(tmp_path / "x.npy", mapped=True), {"scale": 1.0, "offset": 0.0}, [784])
    with open(tmp_path / "x.npy", "r+b") as f:  # another program truncates it (through the map: SIGBUS)
        f.truncate(500 * 784)
    with pytest.raises(DataError, match=f"{tmp_path / 'x.npy'}: the file ended before row 900"):
        features.take(np.array([3, 900]), np.empty((2, 784), np.float32))


def mapped_rows(tmp_path, rows=300, width=7):
    x = np.arange(rows * width, dtype=np.float32).reshape(rows, width)
    np.save(tmp_path / "x.npy", x)
    return x, read_npy(tmp_path / "x.npy", mapped=True)


def test_runs_of_rows_and_rows_out_of_range(tmp_path):
    x, mapped = mapped_rows(tmp_path)
    rows = np.array([5, 6, 7, 8, 2, 299, 0, 1, 150, 151])  # runs of 4, 1, 1, 2, 2
    np.testing.assert_array_equal(take_rows(mapped, rows), x[rows])
    np.testing.assert_array_equal(take_rows(mapped, np.arange(300)), x)
    for bad in ([300], [-1]):
        with pytest.raises(IndexError):
            take_rows(mapped, np.array(bad))


def test_a_read_that_returns_less_than_asked_reads_on(tmp_path, monkeypatch):
    x, mapped = mapped_rows(tmp_path)
    preadv = os.preadv

    def short(fd, buffers, offset):  # as a signal or a network file system may make it
        return preadv(fd, [buffers[0][:min(len(buffers[0]), 5)]], offset)
    monkeypatch.setattr(os, "preadv", short)
    rows = np.array([3, 4, 5, 100, 9])
    np.testing.assert_array_equal(take_rows(mapped, rows), x[rows])


@pytest.mark.skipif(__import__("mlpcli.parallel").parallel.usable_processes(2) < 2,
                    reason="data-parallel training needs Linux on x86-64 with 2 cores")
def test_a_file_cut_short_under_a_helper_process_is_the_same_one_line_error(tmp_path):
    """The rows the helper process reads are gone: its DataError reaches the user as the
    one-line error the main process would give, not a helper's traceback."""
    from mlpcli.config import resolve
    from mlpcli.trainer import Trainer, build_model, random_streams

    np.save(tmp_path / "x.npy", np.ones((64, 12), np.float32))
    cfg = resolve({"name": "t", "seed": 0, "model": {"input_shape": [12], "layers": [
                       {"type": "dense", "units": 4, "activation": "softmax"}]},
                   "training": {"batch_size": 64, "processes": 2, "shuffle": False}})
    streams = random_streams(0)
    trainer = Trainer(build_model(cfg, streams), cfg, streams)
    features = Features(read_npy(tmp_path / "x.npy", mapped=True), {"scale": 1.0, "offset": 0.0}, [12])
    with open(tmp_path / "x.npy", "r+b") as f:  # rows 56-63, of the helper's share (32-63), are cut off
        f.truncate(f.seek(0, 2) - 8 * 12 * 4)
    with pytest.raises(MlpError) as caught:
        trainer.run_epoch(features, np.zeros(64, np.int64))
    assert str(caught.value) == f"{tmp_path / 'x.npy'}: the file ended before row 56; it was changed while being read"
    assert caught.value.exit_code == 2


def test_one_sample_of_mapped_features_is_its_row(tmp_path):
    x, mapped = mapped_rows(tmp_path, rows=10, width=6)
    features = Features(mapped, {"scale": 2.0, "offset": 0.0}, [6])
    for i in (3, -1, np.int64(0)):
        np.testing.assert_array_equal(features[i], x[i] * 2)
