"""Config loading, defaults, --set overrides and validation errors."""

import textwrap

import pytest

from mlpcli.config import apply_override, dump_yaml, load_config, resolve
from mlpcli.errors import ConfigError

MINIMAL = """
model:
  layers:
    - {type: dense, units: 10, activation: softmax}
"""


def write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems(tmp_path, text, overrides=()):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), overrides)
    return info.value.problems


def test_defaults_are_filled(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL))
    assert cfg["data"]["dataset"] == "mnist"
    assert cfg["data"]["scaling"] == "unit"
    assert cfg["model"]["input_shape"] == [784]
    assert cfg["optimizer"] == {"type": "adam", "learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999,
                                "epsilon": 1e-7, "amsgrad": False, "weight_decay": None,
                                "clipnorm": None, "clipvalue": None, "global_clipnorm": None}
    dense = cfg["model"]["layers"][0]
    assert dense["kernel_initializer"] == {"type": "glorot_uniform", "seed": None}
    assert dense["bias_initializer"] == {"type": "zeros", "seed": None}
    assert dense["use_bias"] is True
    assert cfg["training"] == {"epochs": 20, "batch_size": 128, "shuffle": True, "threads": None,
                               "processes": 1, "class_weight": None, "folds": None, "fold": None}
    assert cfg["metrics"] == [{"type": "accuracy"}]
    assert cfg["early_stopping"] is None


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config("configs/mnist-regularized.yaml")
    again = load_config(write(tmp_path, dump_yaml(cfg)))
    assert again == cfg


@pytest.mark.parametrize("path", ["configs/mnist.yaml", "configs/quick.yaml", "configs/mnist-best.yaml",
                                  "configs/mnist-regularized.yaml", "configs/breast-cancer.yaml",
                                  "configs/diabetes-regression.yaml"])
def test_shipped_configs_validate(path):
    cfg = load_config(path)
    assert cfg["model"]["layers"]


def test_mnist_config_is_the_keras_tutorial_model():
    cfg = load_config("configs/mnist.yaml")
    layers = cfg["model"]["layers"]
    assert [l["type"] for l in layers] == ["dense", "activation", "dropout"] * 2 + ["dense"]
    assert [l.get("units") for l in layers if l["type"] == "dense"] == [128, 128, 10]
    assert all(l["kernel_initializer"]["type"] == "glorot_uniform" for l in layers if l["type"] == "dense")
    assert all(l["kernel_regularizer"] is None for l in layers if l["type"] == "dense")
    assert [l["rate"] for l in layers if l["type"] == "dropout"] == [0.3, 0.3]
    assert layers[-1]["activation"] == "softmax"
    assert cfg["loss"] == {"type": "categorical_crossentropy", "label_smoothing": 0.0}
    assert cfg["optimizer"]["type"] == "adam" and cfg["optimizer"]["learning_rate"] == 0.002
    assert cfg["training"]["batch_size"] == 128 and cfg["training"]["epochs"] == 20
    # the cosine decay spans the run, whatever its length (decay_steps null)
    assert cfg["schedule"] == {"type": "cosine_decay", "decay_steps": None, "alpha": 0.0}
    assert cfg["data"]["validation_split"] == 0.2


def test_shorthands_expand(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL + """
optimizer: sgd
schedule: {type: exponential_decay, decay_steps: 100}
metrics: [accuracy, {type: top_k_accuracy, k: 3}]
loss: mse
"""))
    assert cfg["optimizer"]["type"] == "sgd" and cfg["optimizer"]["learning_rate"] == 0.01
    assert cfg["schedule"] == {"type": "exponential_decay", "decay_steps": 100, "decay_rate": 0.96,
                               "staircase": False}
    assert cfg["metrics"][1] == {"type": "top_k_accuracy", "k": 3}
    assert cfg["loss"] == {"type": "mean_squared_error"}


def test_regularizer_forms(tmp_path):
    cfg = load_config(write(tmp_path, """
model:
  layers:
    - {type: dense, units: 4, kernel_regularizer: l2, bias_regularizer: {l1: 0.5},
       activity_regularizer: {type: l1_l2, l1: 0.1, l2: 0.2}}
"""))
    dense = cfg["model"]["layers"][0]
    assert dense["kernel_regularizer"] == {"l1": 0.0, "l2": 0.01}
    assert dense["bias_regularizer"] == {"l1": 0.5, "l2": 0.0}
    assert dense["activity_regularizer"] == {"l1": 0.1, "l2": 0.2}


def test_overrides(tmp_path):
    path = write(tmp_path, MINIMAL + "optimizer: adam\n")
    cfg = load_config(path, ["training.epochs=5", "optimizer.learning_rate=0.01",
                             "model.layers[0].units=7", "data.max_train_samples=100",
                             "metrics=[accuracy, f1]"])
    assert cfg["training"]["epochs"] == 5
    assert cfg["optimizer"]["learning_rate"] == 0.01 and cfg["optimizer"]["type"] == "adam"
    assert cfg["model"]["layers"][0]["units"] == 7
    assert cfg["data"]["max_train_samples"] == 100
    assert [m["type"] for m in cfg["metrics"]] == ["accuracy", "f1"]


def test_override_errors(tmp_path):
    path = write(tmp_path, MINIMAL)
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(path, ["training.epochs"])
    with pytest.raises(ConfigError, match=r"model.layers\[5\] does not exist"):
        load_config(path, ["model.layers[5].units=3"])
    with pytest.raises(ConfigError, match="epochz"):
        load_config(path, ["training.epochz=3"])
    # a list position must be a number, and dots join names: a[x] is not a.x
    for key in ("model.layers[x].units", "training..epochs", "training.", "[0].units"):
        with pytest.raises(ConfigError, match=r"malformed key .*e\.g\. model\.layers\[0\]\.units"):
            load_config(path, [f"{key}=3"])


def test_bad_dropout_rate_names_path_value_and_range(tmp_path):
    probs = problems(tmp_path, """
model:
  layers:
    - {type: dense, units: 8, activation: relu}
    - {type: dense, units: 8}
    - {type: dropout, rate: 1.5}
    - {type: dense, units: 10, activation: softmax}
""")
    assert probs == ["model.layers[2].rate: must be in [0, 1), got 1.5"]


def test_all_errors_reported_at_once_with_suggestions(tmp_path):
    probs = problems(tmp_path, """
name: ok
trainig: {epochs: 3}
loss: categorical_crossentropyy
optimizer: {type: adma, learning_rate: -1}
model:
  layers:
    - {type: dense, units: 0, activation: relux}
    - {type: dropot}
training: {epochs: two, batch_size: 0}
""")
    text = "\n".join(probs)
    assert "trainig: unknown key (did you mean 'training'?)" in text
    assert "loss: unknown loss 'categorical_crossentropyy' (did you mean 'categorical_crossentropy'?)" in text
    assert "optimizer.type: unknown optimizer 'adma' (did you mean 'adam'?)" in text
    assert "model.layers[0].units: must be in [1, inf), got 0" in text
    assert "model.layers[0].activation: unknown activation 'relux' (did you mean 'relu'?)" in text
    assert "model.layers[1].type: unknown layer type 'dropot' (did you mean 'dropout'?)" in text
    assert "training.epochs: must be an integer, got 'two' (str)" in text
    assert "training.batch_size: must be in [1, inf), got 0" in text
    assert len(probs) == 8


def test_type_errors(tmp_path):
    probs = problems(tmp_path, MINIMAL + """
seed: 1.5
training: {shuffle: "yes"}
optimizer: {type: sgd, nesterov: 1, momentum: 1.0}
data: {validation_split: 1.0}
""")
    text = "\n".join(probs)
    assert "seed: must be an integer, got 1.5 (float)" in text
    assert "training.shuffle: must be true or false, got 'yes' (str)" in text
    assert "optimizer.nesterov: must be true or false, got 1 (int)" in text
    assert "optimizer.momentum: must be in [0, 1), got 1.0" in text
    assert "data.validation_split: must be in [0, 1), got 1.0" in text


def test_unknown_optimizer_parameter(tmp_path):
    probs = problems(tmp_path, MINIMAL + "optimizer: {type: adam, beta1: 0.8}\n")
    assert probs[0].startswith("optimizer.beta1: unknown key (did you mean 'beta_1'?)")


def test_monitor_names_checked_before_training(tmp_path):
    probs = problems(tmp_path, MINIMAL + "checkpoint: {monitor: val_acc}\n")
    assert "checkpoint.monitor: unknown monitored quantity 'val_acc'" in probs[0]
    assert "val_accuracy" in probs[0]
    probs = problems(tmp_path, MINIMAL + "data: {validation_split: 0}\nearly_stopping: {monitor: val_loss}\n")
    assert any("early_stopping.monitor" in p and "no validation data" in p for p in probs)


def test_run_name_cannot_escape_runs_root(tmp_path):
    for name in ["../x", "/etc/x", "a/b", ".."]:
        probs = problems(tmp_path, MINIMAL + f"name: '{name}'\n")
        assert probs[0].startswith("name: must be a plain folder name")


def test_regression_rejects_classification_metrics(tmp_path):
    probs = problems(tmp_path, MINIMAL + "task: regression\nmetrics: [accuracy]\n")
    assert probs == ["metrics[0]: 'accuracy' needs a classification task; for regression use mse or mae"]


def test_dataset_paths_are_relative_to_the_config_file(tmp_path):
    sub = tmp_path / "cfg"
    sub.mkdir()
    path = write(sub, "data: {dataset: csv, path: data/x.csv}\n"
                      "model: {input_shape: [3], layers: [{type: dense, units: 2, activation: softmax}]}\n")
    cfg = load_config(path)
    assert cfg["data"]["path"] == str((sub / "data" / "x.csv").resolve())
    probs = problems(tmp_path, MINIMAL + "data: {dataset: csv}\n")
    assert "data.path: is required for dataset 'csv' (a file or folder)" in probs


def test_yaml_errors_name_file_line_and_column(tmp_path):
    path = write(tmp_path, "model:\n  layers: [\n    {type: dense\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and "line" in str(info.value) and "column" in str(info.value)


def test_yaml_python_tags_never_run(tmp_path):
    marker = tmp_path / "pwned"
    path = write(tmp_path, f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(path)
    assert not marker.exists()


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_resolve_rejects_bad_layer_entry():
    with pytest.raises(ConfigError) as info:
        resolve({"model": {"layers": ["dense"]}})
    assert info.value.problems[0].startswith("model.layers[0]: must be a mapping with 'type'")


def test_apply_override_turns_shorthand_into_mapping():
    raw = {"optimizer": "sgd"}
    apply_override(raw, "optimizer.momentum=0.9")
    assert raw == {"optimizer": {"type": "sgd", "momentum": 0.9}}


def test_scientific_notation_is_a_number(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL + "optimizer: {type: adam, learning_rate: 1e-4}\n"),
                      ["optimizer.epsilon=1E-8"])
    assert cfg["optimizer"]["learning_rate"] == 1e-4 and cfg["optimizer"]["epsilon"] == 1e-8
    assert load_config(write(tmp_path, MINIMAL + "name: 1e3x\n"))["name"] == "1e3x"


def test_sweep_section_is_allowed_in_a_training_config(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL + "sweep: {grid: {training.batch_size: [64, 128]}}\n"))
    assert cfg["sweep"] == {"grid": {"training.batch_size": [64, 128]}}
    assert problems(tmp_path, MINIMAL + "sweep: [1, 2]\n")[0].startswith("sweep: must be a mapping")


@pytest.mark.parametrize("loss, last, words", [
    ("binary_crossentropy", "{type: dense, units: 10, activation: softmax}",
     ["binary_crossentropy on a softmax of 10 outputs", "use categorical_crossentropy"]),
    ("categorical_crossentropy", "{type: dense, units: 1, activation: sigmoid}",
     ["categorical_crossentropy needs one output per class", "use binary_crossentropy"]),
])
def test_a_loss_that_cannot_score_the_output_layer_is_refused_with_the_fix(tmp_path, loss, last, words):
    found = problems(tmp_path, f"""
        model:
          input_shape: [784]
          layers: [{{type: dense, units: 8, activation: relu}}, {last}]
        loss: {loss}
    """)
    assert any(p.startswith("loss:") and all(w in p for w in words) for p in found), found


def test_the_losses_that_fit_their_output_layers_are_accepted():
    for loss, units, activation in [("binary_crossentropy", 1, "sigmoid"),
                                    ("binary_crossentropy", 3, "sigmoid"),  # multi-label, as Keras allows
                                    ("categorical_crossentropy", 10, "softmax")]:
        resolve({"model": {"input_shape": [784], "layers": [
            {"type": "dense", "units": 8}, {"type": "dense", "units": units, "activation": activation}]},
                 "loss": loss})
