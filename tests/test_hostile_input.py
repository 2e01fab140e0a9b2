"""Hostile input end to end: every bad config, path, data file, model file or image
given to the ``mlp`` CLI ends in one ``Error: ...`` line naming the problem and
exit code 2 -- never a traceback, never a file written where it should not be.

Everything goes through ``click.testing.CliRunner().invoke(mlpcli.cli.main, ...)``.
CliRunner catches an unhandled exception itself (exit code 1, no traceback in
the output), so ``refused`` also checks that the command ended through
``sys.exit`` -- i.e. that ``clean_errors`` (or click) handled the error.

The unit-level versions of several of these live elsewhere and are not repeated
here: tests/test_config.py (YAML tags, YAML line/column, non-mapping, names),
tests/test_data_csv.py and tests/test_data_npz.py (loader messages),
tests/test_modelfile.py (model file refusals), tests/test_images.py (PNG
refusals), tests/test_train_cli.py (a non-empty --run-dir holding a visible
file) and tests/test_evaluate_predict_cli.py (predict on a missing, empty or
text file).
"""

import json
import os
import pathlib
import shutil
import time

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import png_bytes
from PIL import Image

from mlpcli.cli import main
from mlpcli.config import read_yaml, resolve
from mlpcli.errors import ConfigError

KERNEL = "model_weights/dense/dense/kernel:0"  # the first dense layer's kernel, (784, 64)
TINY = ["-q", "--no-plots", "--set", "data.max_train_samples=300", "--set", "training.epochs=1"]


def invoke(args):
    return CliRunner().invoke(main, [str(a) for a in args])


def refused(result, *words, code=2):
    """Assert a clean refusal: exit ``code`` through sys.exit, no traceback, all ``words`` in
    the output (case-insensitive); return the output."""
    out = result.output
    assert result.exit_code == code, out
    # an unhandled exception would also give a non-zero code, but not a SystemExit
    assert isinstance(result.exception, SystemExit), (result.exception, out)
    assert "Traceback" not in out
    assert out.startswith("Error:") or "\nError:" in out, out
    for word in words:
        assert str(word).lower() in out.lower(), (word, out)
    return out


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------ YAML


@pytest.mark.parametrize("text", [
    "name: !!python/object/apply:os.system ['touch {marker}']\n",
    "!!python/object/apply:os.system ['touch {marker}']\n",
    "model: {layers: [!!python/object/new:subprocess.Popen [['touch', '{marker}']]]}\n",
], ids=["value", "document", "nested"])
def test_yaml_python_tags_never_run(tmp_path, text):
    marker = tmp_path / "pwned"
    config = write(tmp_path / "evil.yaml", text.replace("{marker}", str(marker)))
    out = refused(invoke(["train", config, "--runs-root", tmp_path / "runs"]),
                  config, "invalid YAML", "line 1", "python/")
    assert "constructor" in out
    assert not marker.exists()
    assert not (tmp_path / "runs").exists()


def test_malformed_yaml_names_file_line_and_column(tmp_path):
    config = write(tmp_path / "tabs.yaml", "name: x\nmodel:\n\tlayers: []\n")
    refused(invoke(["train", config]), config, "invalid YAML", "line 3, column 1")


def test_yaml_list_is_refused(tmp_path):
    config = write(tmp_path / "list.yaml", "- name: x\n- model: {}\n")
    refused(invoke(["train", config]), config, "top level must be a mapping", "list")


@pytest.mark.parametrize("text", ["", "# only a comment\n", "null\n", "---\n...\n"],
                         ids=["empty", "comment", "null", "empty-document"])
def test_empty_config_needs_model_layers(tmp_path, text):
    config = write(tmp_path / "empty.yaml", text)
    refused(invoke(["train", config, "--runs-root", tmp_path / "runs"]),
            "model.layers", "non-empty list", "got null")
    assert not (tmp_path / "runs").exists()


def test_yaml_alias_bomb_is_refused_quickly(tmp_path):
    """'Billion laughs': nine levels of nine aliases, a 387-million-item value from 1 kB.
    Safe-loading shares the aliased lists; an error message must not expand them."""
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]
    config = write(tmp_path / "laughs.yaml", "\n".join(lines) + "\nseed: *l9\n")
    start = time.perf_counter()
    refused(invoke(["train", config, "--dry-run"]), "seed: must be an integer", "l9: unknown key")
    assert time.perf_counter() - start < 5


def test_deeply_nested_yaml_is_refused(tmp_path):
    config = write(tmp_path / "deep.yaml", "seed: " + "[" * 5000 + "]" * 5000 + "\n")
    refused(invoke(["train", config, "--dry-run"]), config, "nested too deeply")


@pytest.mark.parametrize("text, words", [
    ("seed: " + "9" * 5000 + "\n", ["cannot be read"]),
    ("name: 2001-13-45\n", ["cannot be read", "month must be in 1..12"]),
], ids=["5000-digit-integer", "impossible-date"])
def test_yaml_values_python_cannot_build_are_refused(tmp_path, text, words):
    config = write(tmp_path / "odd.yaml", text)
    refused(invoke(["train", config, "--dry-run"]), config, *words)


@pytest.mark.parametrize("override, words", [
    ("seed=" + "[" * 5000, ["--set", "nested too deeply"]),
    ("model.layers[" + "9" * 5000 + "].units=3", ["--set", "list positions as [N]"]),
    ("training.epochs=-" + "9" * 4000, ["training.epochs", "must be in [1, inf)", "hex digits"]),
    ("training.epochs=" + "9" * 5000, ["training.epochs", "must be an integer"]),
    ("checkpoint.filename=m{epoch[0]}.h5", ["checkpoint.filename"]),
    ("checkpoint.filename=m{epoch.real.x}.h5", ["checkpoint.filename"]),
    ("checkpoint.filename=m{epoch:999999999999}.h5", ["checkpoint.filename", "too wide"]),
    ("loss=[categorical_crossentropy]", ["loss: must be a loss name or a mapping"]),
    ("optimizer.type=[adam]", ["optimizer.type: must be one of"]),
    ("model.layers[0].type={dense: 1}", ["model.layers[0].type: must be one of"]),
    ("optimizer.learning_rate=.nan", ["optimizer.learning_rate", "finite", "nan"]),
    ("optimizer.learning_rate=.inf", ["optimizer.learning_rate", "finite", "inf"]),
    ("checkpoint.monitor=[val_loss]", ["checkpoint.monitor: must be a string"]),
], ids=["deep-value", "huge-index", "huge-negative", "too-many-digits", "format-index", "format-attribute",
        "format-width", "list-loss", "list-optimizer", "dict-layer-type", "nan", "inf",
        "list-monitor"])
def test_hostile_overrides_are_config_errors(tmp_path, override, words):
    refused(invoke(["train", "configs/quick.yaml", "--dry-run", "--set", override]), *words)


@pytest.mark.parametrize("override", ["model.layers[0].units=1000000000000", "model.input_shape=[1000000000000]"])
def test_model_too_large_to_allocate_is_a_clean_error(override):
    result = invoke(["train", "configs/quick.yaml", "--dry-run", "--set", override])
    if not isinstance(result.exception, SystemExit):
        raise result.exception
    refused(result, "too large")


# ------------------------------------------------------------------ paths


@pytest.mark.parametrize("name", ["../escape", "/etc/x", "a/b", "..", "."])
@pytest.mark.parametrize("how", ["config", "--set"])
def test_run_name_cannot_leave_the_runs_root(tmp_path, monkeypatch, name, how):
    monkeypatch.chdir(tmp_path)
    base = pathlib.Path(__file__).resolve().parents[1] / "configs" / "quick.yaml"
    if how == "config":
        config = write(tmp_path / "c.yaml", base.read_text().replace("name: quick", f"name: '{name}'"))
        args = ["train", config]
    else:
        config = tmp_path / "c.yaml"
        shutil.copyfile(base, config)
        args = ["train", config, "--set", f"name={name}"]
    before = sorted(p.name for p in tmp_path.iterdir())
    refused(invoke([*args, "--runs-root", tmp_path / "runs" / "root", *TINY]),
            "name: must be a plain folder name", repr(name))
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not list(pathlib.Path("/etc").glob("x-2*"))


def test_run_dir_with_only_hidden_files_is_not_empty(tmp_path):
    target = tmp_path / "mine"
    target.mkdir()
    (target / ".keep").write_text("keep me")
    refused(invoke(["train", "configs/quick.yaml", "--run-dir", target, "--runs-root",
                    tmp_path / "runs", *TINY]), target, "not empty")
    assert [p.name for p in target.iterdir()] == [".keep"]
    assert (target / ".keep").read_text() == "keep me"
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("option", ["--run-dir", "--runs-root"])
def test_run_dir_that_is_a_file_is_refused(tmp_path, option):
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    refused(invoke(["train", "configs/quick.yaml", option, target, *TINY]), "notes.txt", "is a file")
    assert target.read_text() == "keep me"


@pytest.mark.parametrize("option", ["--run-dir", "--runs-root"])
def test_run_dir_below_a_file_is_refused(tmp_path, option):
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    result = invoke(["train", "configs/quick.yaml", option, target / "sub", *TINY])
    if not isinstance(result.exception, SystemExit):
        raise result.exception
    refused(result, "notes.txt", code=1)  # the OS's "Not a directory", as every OS error


# ------------------------------------------------------------------ data files


CSV_CONFIG = """
name: hostile
data: {{dataset: csv, path: data.csv, validation_split: 0.0{extra}}}
model:
  input_shape: [{features}]
  layers: [{{type: dense, units: {units}, activation: softmax}}]
loss: sparse_categorical_crossentropy
checkpoint: {{monitor: loss}}
training: {{epochs: 1, batch_size: 2}}
"""


def csv_config(tmp_path, content, *, units=3, features=2, extra=""):
    """A config training on data.csv (``content``: text or bytes) in tmp_path; the model has
    ``features`` inputs and a softmax over ``units`` classes."""
    data = tmp_path / "data.csv"
    if isinstance(content, bytes):
        data.write_bytes(content)
    else:
        write(data, content)
    return write(tmp_path / "c.yaml", CSV_CONFIG.format(units=units, features=features, extra=extra))


def csv_run(tmp_path, content, **kwargs):
    """``mlp train`` on a CSV config; asserts that no run folder was made."""
    result = invoke(["train", csv_config(tmp_path, content, **kwargs), "--runs-root",
                     tmp_path / "runs", "--no-plots"])
    assert not (tmp_path / "runs").exists()
    return result


def test_csv_good_file_trains(tmp_path):
    """The baseline that each refusal below changes one thing of."""
    config = csv_config(tmp_path, "x1,x2,label\n0,1,0\n1,0,1\n2,2,2\n")
    result = invoke(["train", config, "--run-dir", tmp_path / "run", "-q", "--no-plots"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "model.h5").exists()


def test_csv_missing_value_names_line_and_column(tmp_path):
    refused(csv_run(tmp_path, "x1,x2,label\n0,1,0\n1,,1\n"), "data.csv", "line 3", "'x2'", "missing value")


def test_csv_non_numeric_cell_names_line_and_column(tmp_path):
    refused(csv_run(tmp_path, "x1,x2,label\n0,1,0\n1,2,1\nseven,1,2\n"),
            "data.csv", "line 4", "'x1'", "not a number: 'seven'")


def test_csv_label_outside_the_models_classes(tmp_path):
    text = "x1,x2,label\n" + "".join(f"{i},{i},{i}\n" for i in range(5))
    refused(csv_run(tmp_path, text, units=3), "labels range over 0..4", "3 classes", "units")


def test_csv_feature_count_differs_from_input_shape(tmp_path):
    refused(csv_run(tmp_path, "a,b,c,label\n0,1,2,0\n1,2,3,1\n", features=2),
            "(3,)", "3 values", "model.input_shape is [2]")


def test_csv_header_only(tmp_path):
    refused(csv_run(tmp_path, "x1,x2,label\n"), "data.csv", "no data rows")


def test_csv_validation_split_leaves_no_training_data(tmp_path):
    refused(csv_run(tmp_path, "x1,x2,label\n0,1,0\n1,0,1\n", extra=", validation_split: 0.9"),
            "validation fraction 0.9", "no training samples")


def test_csv_of_binary_garbage(tmp_path):
    refused(csv_run(tmp_path, b"\xff\xfe\x00garbage\x00\x81\n"), "data.csv", "not UTF-8")


class Boom:
    """Unpickling this creates its marker file, so a test can tell whether anything was unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def test_npz_object_dtype_is_refused_without_unpickling(tmp_path):
    marker = tmp_path / "unpickled"
    data = tmp_path / "data.npz"
    booms = np.empty(4, dtype=object)
    booms[:] = [Boom(marker) for _ in range(4)]
    np.savez(data, x_train=booms, y_train=np.zeros(4, np.int64))  # np.savez pickles object arrays
    config = write(tmp_path / "c.yaml", """
data: {dataset: npz, path: data.npz}
model: {input_shape: [1], layers: [{type: dense, units: 2, activation: softmax}]}
checkpoint: {monitor: loss}
""")
    refused(invoke(["train", config, "--runs-root", tmp_path / "runs"]),
            "data.npz", "'x_train'", "object dtype", "refused")
    assert not marker.exists()
    assert not (tmp_path / "runs").exists()
    # the file really is a trap: loading it with pickles allowed springs it
    np.load(data, allow_pickle=True)["x_train"]
    assert marker.exists()


# ------------------------------------------------------------------ model files


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """configs/quick.yaml on 300 MNIST images for one epoch: a real run and model file."""
    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    result = invoke(["train", "configs/quick.yaml", "--run-dir", run_dir, *TINY])
    assert result.exit_code == 0, result.output
    return run_dir


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    path = tmp_path_factory.mktemp("rows") / "rows.npy"
    np.save(path, np.zeros((2, 784), np.float32))
    return path


def model_commands(model, rows):
    return {"evaluate": ["evaluate", "--model", model, "--data", "mnist"],
            "predict": ["predict", "--model", model, "--npy", rows]}


def refused_in_a_child_process(model, rows, message):
    """Every command that reads ``model`` exits 2 with ``message`` and no traceback; each runs in
    a child process with a timeout (a damaged file must not hang or crash the interpreter)."""
    import subprocess
    import sys

    for command in model_commands(model, rows).values():
        done = subprocess.run([sys.executable, "-m", "mlpcli", *map(str, command)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
        assert message in done.stderr and "Traceback" not in done.stderr


@pytest.fixture(params=["evaluate", "predict"])
def use_model(request, rows, tmp_path):
    """Run ``mlp evaluate --model X --data mnist`` or ``mlp predict --model X --npy rows.npy``."""
    def run(model):
        return invoke(model_commands(model, rows)[request.param])
    return run


def damaged(tiny_run, tmp_path, change):
    path = tmp_path / "damaged.h5"
    shutil.copyfile(tiny_run / "model.h5", path)
    with h5py.File(path, "r+") as f:
        change(f)
    return path


def edit_model_config(change):
    def edit(f):
        config = json.loads(f.attrs["model_config"])
        change(config["config"]["layers"])
        f.attrs["model_config"] = json.dumps(config)
    return edit


def replace(where, **dataset):
    def edit(f):
        del f[where]
        f.create_dataset(where, **dataset)
    return edit


def test_the_tiny_model_is_usable(tiny_run, use_model):
    result = use_model(tiny_run / "model.h5")
    assert result.exit_code == 0, result.output


def test_model_not_hdf5(tmp_path, use_model):
    path = write(tmp_path / "model.h5", "this is not a model\n" * 50)
    refused(use_model(path), path, "not a readable HDF5 file")


def test_model_zero_bytes(tmp_path, use_model):
    path = tmp_path / "model.h5"
    path.touch()
    refused(use_model(path), path, "HDF5")


@pytest.mark.parametrize("fraction", [0.01, 0.5, 0.99])
def test_model_truncated(tiny_run, tmp_path, use_model, fraction):
    data = (tiny_run / "model.h5").read_bytes()
    path = tmp_path / "model.h5"
    path.write_bytes(data[:int(len(data) * fraction)])
    refused(use_model(path), path)


def test_model_with_lambda_layer_runs_no_code(tiny_run, tmp_path, use_model, monkeypatch):
    import builtins
    import marshal

    def forbidden(*args, **kwargs):
        raise AssertionError("the loader tried to run code from the model file")

    def add_lambda(layers):
        layers.insert(2, {"class_name": "Lambda", "config": {
            "name": "lambda", "function": ["__import__('os').system('touch pwned')", None, None],
            "function_type": "lambda", "module": "builtins", "output_shape": None, "arguments": {}}})
    path = damaged(tiny_run, tmp_path, edit_model_config(add_lambda))
    monkeypatch.setattr(marshal, "loads", forbidden)
    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    refused(use_model(path), path, "'Lambda'", "supported")


def test_model_with_unknown_layer_class(tiny_run, tmp_path, use_model):
    def conv(layers):
        layers[1] = {"class_name": "Conv2D", "config": {"name": "conv2d", "filters": 4,
                                                        "kernel_size": [3, 3]}}
    path = damaged(tiny_run, tmp_path, edit_model_config(conv))
    refused(use_model(path), path, "'Conv2D'", "supported")


def test_model_weight_of_wrong_shape(tiny_run, tmp_path, use_model):
    path = damaged(tiny_run, tmp_path, replace(KERNEL, data=np.zeros((784, 63), np.float32)))
    refused(use_model(path), path, "(784, 63)", "(784, 64)")


@pytest.mark.parametrize("dtype", ["S8", h5py.string_dtype(), "c8", "?"],
                         ids=["bytes", "vlen-str", "complex", "bool"])
def test_model_weight_non_numeric_dtype(tiny_run, tmp_path, use_model, dtype):
    path = damaged(tiny_run, tmp_path, replace(KERNEL, shape=(784, 64), dtype=dtype))
    refused(use_model(path), path, "non-numeric dtype")


def test_model_weight_overflowing_float32(tiny_run, tmp_path, use_model):
    path = damaged(tiny_run, tmp_path, replace(KERNEL, data=np.full((784, 64), 1e300)))
    refused(use_model(path), path, "kernel:0", "infinite")


@pytest.mark.parametrize("units", [10**12, 10**7], ids=["1e12", "1e7"])
def test_model_config_claiming_a_huge_layer(tiny_run, tmp_path, use_model, units):
    """A 600 kB file must not make the loader allocate terabytes (or gigabytes)."""
    def huge(layers):
        layers[1]["config"]["units"] = units
    path = damaged(tiny_run, tmp_path, edit_model_config(huge))
    start = time.perf_counter()
    refused(use_model(path), path, "more weights than")
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("where", [KERNEL, "mlpcli/optimizer/m/0"])
def test_model_dataset_declaring_a_huge_shape(tiny_run, tmp_path, use_model, where):
    """HDF5 datasets without stored data cost nothing in the file but terabytes when read."""
    path = damaged(tiny_run, tmp_path, replace(where, shape=(10**6, 10**6), dtype="f8"))
    refused(use_model(path), path, "(1000000, 1000000)")


def test_model_attribute_with_damaged_datatype_does_not_crash(tiny_run, tmp_path, rows):
    """One flipped bit field in model_config's HDF5 datatype (a variable-length string turned
    into a variable-length sequence) made libhdf5 2.0 segfault while reading the attribute.
    Run in a child process, so a regression fails this test instead of killing the run."""
    data = bytearray((tiny_run / "model.h5").read_bytes())
    at = data.index(b"model_config\x00") + 16  # the attribute message's datatype, after the padded name
    if data[at:at + 2] != b"\x19\x01":  # class 9 (variable-length) version 1, of type 1 (string)
        pytest.skip("this HDF5 library lays out attribute messages differently")
    data[at + 1] = 0x7A  # variable-length type 10: not a string, not a valid sequence
    path = tmp_path / "model.h5"
    path.write_bytes(data)
    refused_in_a_child_process(path, rows, f"Error: {path}: attribute 'model_config' is not JSON text")


def test_model_with_damaged_global_heap_does_not_hang(tiny_run, tmp_path, rows):
    """A global heap object (where HDF5 keeps variable-length strings) of size 0 made libhdf5 2.0
    loop forever reading model_config. Run in a child process with a timeout."""
    data = bytearray((tiny_run / "model.h5").read_bytes())
    first = data.index(b"GCOL\x01\x00\x00\x00") + 16  # the first object's header, after the collection's
    data[first:first + 2] = bytes(2)  # object index 0: free space ...
    data[first + 8:first + 16] = bytes(8)  # ... of 0 bytes
    path = tmp_path / "model.h5"
    path.write_bytes(data)
    refused_in_a_child_process(path, rows, f"Error: {path}: damaged HDF5 file (the global heap")


@pytest.mark.parametrize("key, value", [
    ("class_names", 7), ("class_names", [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]), ("class_names", {"a": 1}),
    ("preprocessing", [1, 2]), ("state", [1]), ("config", "text"),
])
def test_model_extras_of_the_wrong_type(tiny_run, tmp_path, use_model, key, value):
    def edit(f):
        if key in ("class_names", "preprocessing"):  # read only from a file without a pipeline record
            del f["mlpcli/pipeline"]
        f["mlpcli"].attrs[key] = json.dumps(value)
    path = damaged(tiny_run, tmp_path, edit)
    refused(use_model(path), path, key)


def test_model_with_invalid_stored_config_is_refused_by_evaluate(tiny_run, tmp_path):
    def edit(f):
        f["mlpcli"].attrs["config"] = json.dumps({"task": "classification"})
    path = damaged(tiny_run, tmp_path, edit)
    refused(invoke(["evaluate", "--model", path]), path, "config", "model.layers")


def test_run_with_damaged_config_yaml(tiny_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    with h5py.File(run_dir / "model.h5", "r+") as f:
        del f["mlpcli"].attrs["config"]
    write(run_dir / "config.yaml", "- just\n- a list\n")
    refused(invoke(["evaluate", run_dir]), "config.yaml")


def test_damaged_checkpoint_is_skipped_not_fatal(tiny_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    with h5py.File(run_dir / "checkpoints" / "model-01.h5", "r+") as f:
        f["mlpcli"].attrs["state"] = json.dumps([1, 2])
    refused(invoke(["evaluate", run_dir, "--checkpoint", "last"]), "no checkpoints")


# ------------------------------------------------------------------ images




def digit_png(tmp_path):
    path = tmp_path / "good.png"
    canvas = np.zeros((40, 40), np.uint8)
    canvas[8:32, 18:22] = 255
    Image.fromarray(canvas).save(path)
    return path.read_bytes()


def jpeg(tmp_path):
    path = tmp_path / "x.jpg"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(path, format="JPEG")
    return path.read_bytes()


@pytest.mark.parametrize("content, words", [
    (lambda t: jpeg(t)[:40], ["truncated or corrupt JPEG"]),
    (b"hello, I am text\n", ["not an image mlp can read", "accepted formats: PNG, JPEG"]),
    (lambda t: digit_png(t)[:60], ["truncated or corrupt PNG"]),
    (lambda t: digit_png(t)[:len(digit_png(t)) // 2], ["truncated or corrupt PNG"]),
    (b"", ["empty file (0 bytes)"]),
    (png_bytes(20000, 20000), ["too large"]),
    (png_bytes(8000, 8000), ["too large", "8000x8000"]),
    (png_bytes(2**31 - 1, 2**31 - 1), ["too large"]),
    (png_bytes(0, 0), ["truncated or corrupt PNG"]),
    (lambda t: digit_png(t).replace(b"IHDR", b"IHDX"), ["truncated or corrupt PNG"]),
], ids=["truncated-jpeg", "text", "truncated-head", "truncated-half", "zero-bytes", "20000x20000", "8000x8000", "2^31-1",
        "zero-size", "bad-crc-chunk-name"])
def test_predict_refuses_bad_images_quickly(tiny_run, tmp_path, content, words):
    path = tmp_path / "digit.png"
    path.write_bytes(content(tmp_path) if callable(content) else content)
    start = time.perf_counter()
    result = invoke(["predict", path, "--run", tiny_run])
    elapsed = time.perf_counter() - start
    refused(result, path, *words)
    assert elapsed < 2


def test_predict_good_png_baseline(tiny_run, tmp_path):
    path = tmp_path / "digit.png"
    path.write_bytes(digit_png(tmp_path))
    result = invoke(["predict", path, "--run", tiny_run, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.splitlines()[0])["source"] == str(path)


def test_predict_folder_with_one_bad_png_names_it(tiny_run, tmp_path):
    folder = tmp_path / "digits"
    folder.mkdir()
    (folder / "a.png").write_bytes(digit_png(tmp_path))
    (folder / "b.png").write_bytes(png_bytes(20000, 20000))
    refused(invoke(["predict", folder, "--run", tiny_run]), folder / "b.png", "too large")


def test_predict_npy_of_objects_is_refused_without_unpickling(tiny_run, tmp_path):
    marker = tmp_path / "unpickled"
    path = tmp_path / "rows.npy"
    booms = np.empty(2, dtype=object)
    booms[:] = [Boom(marker), Boom(marker)]
    np.save(path, booms, allow_pickle=True)
    refused(invoke(["predict", "--npy", path, "--run", tiny_run]), path, "object dtype", "refused")
    assert not marker.exists()


def test_predict_without_runs(tmp_path):
    refused(invoke(["predict", "x.png", "--runs-root", tmp_path / "none"]), "no runs found")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("template, words", [
    ("{epoch:c}tmp{epoch:c}pwn.h5", ["{epoch:c}", "numeric type"]),  # epoch 47 is '/'
    ("m{epoch:\0<3}.h5", ["no NUL"]),
    ("a" * 200 + "{epoch:060d}.h5", ["263 bytes", "over the 255"]),
    ("m{val_loss:.60f}{loss:.60f}{loss:.60f}.h5", ["-3.40", "over the 255"]),  # only a huge metric is too long
    ("{epoch:.>4}.h5", ["{epoch:.>4}", "fill characters"]),  # '...1.h5': a hidden name
    ("m{epoch:{loss}}.h5", ["{epoch:{loss}}"]),
], ids=["c-type-gives-slash", "nul-fill", "over-long", "huge-metric-too-long", "dot-fill", "nested-field"])
def test_checkpoint_filename_that_can_leave_a_plain_name_is_refused(template, words):
    """Review findings 1, 10, 11: each of these passed the check, then wrote outside checkpoints/,
    or failed after an epoch with a traceback or ENAMETOOLONG."""
    with pytest.raises(ConfigError, match="checkpoint.filename") as caught:
        resolve({**read_yaml("configs/quick.yaml"), "checkpoint": {"filename": template}})
    for word in words:
        assert word in str(caught.value)


def test_checkpoint_name_is_checked_again_when_saved():
    """Defence in depth: a name the check let through that is still not plain stops training
    with an error naming the key, and nothing is written."""
    from types import SimpleNamespace

    from mlpcli.callbacks import Checkpoints

    checkpoints = SimpleNamespace(cfg={"checkpoint": {"filename": "{epoch:c}x.h5"}})
    with pytest.raises(ConfigError, match=r"checkpoint.filename: .*at epoch 47.*'/'"):
        Checkpoints.file_name(checkpoints, 47, {"loss": 0.5})
    assert Checkpoints.file_name(checkpoints, 65, {"loss": 0.5}) == "Ax.h5"
