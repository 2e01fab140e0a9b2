"""A new run's first weights taken from a trained model (``init_from``, ``mlp train --init-from``).

The source is a run folder (its model.h5), a sweep folder (its recommended trial's), or a
model file: one of a run's, or any Keras-layout .h5 or Keras 3 .keras. Each layer of the new model that has
weights takes the weights of the source's layer of the same name when they have the same
names and shapes; the others keep the weights they were initialised with.
"""

from pathlib import Path

from mlpcli import modelfile, run_models, runs
from mlpcli.errors import MlpError


def source_file(path, note=None):
    """The model file that ``path`` (a run or sweep folder, or a model file) stands for;
    ``note`` is told which trial of a sweep is used."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.exists():
        raise MlpError(f"init_from: {path}: no such run folder or model file")
    return run_models.choose_checkpoint(runs.model_folder(path, note=note), None)


def copy_matching(model, path):
    """Copy into ``model`` the weights of the layers of the model file ``path`` that match by
    name and shapes; return one line per layer with weights saying what it got. An error when
    no layer matches (training would start from scratch, which is not what was asked)."""
    theirs = {layer.name: layer for layer in modelfile.load(path).model.layers if layer.params}
    lines, copied = [], 0
    for layer in model.layers:
        if not layer.params:
            continue
        source = theirs.get(layer.name)
        mine = _weights(layer)
        if source is None:
            lines.append(f"  {layer.name}: not copied (no layer of that name with weights in {path})")
        elif _weights(source) != mine:
            lines.append(f"  {layer.name}: not copied (other shape: {_shown(_weights(source))} there, "
                         f"{_shown(mine)} here)")
        else:
            for param, value in zip(layer.params, source.params, strict=True):
                param[...] = value
            copied += 1
            lines.append(f"  {layer.name}: copied {_shown(mine)}")
    if not copied:
        raise MlpError("\n".join([(f"init_from: {path}: no layer matches the model's by name and "
                                   "shape, so there is nothing to start from:"), *lines]))
    return lines


def _weights(layer):
    """(weight name, shape) of each of a layer's weights."""
    return [(name, tuple(p.shape)) for name, p in zip(layer.weight_names, layer.params, strict=True)]


def _shown(weights):
    return ", ".join(f"{name} {list(shape)}" for name, shape in weights)
