"""The shape of one sample of a dataset, read from its files without loading them: what
``model.input_shape`` is when a config leaves it out.

Only headers are read (the .npy header of x_train, the first image's header), through
the loaders' own readers, so a file that cannot be read gives the error loading it would
give. A CSV file is the exception: its categorical columns add a feature per category,
so its training file is read and encoded as training encodes it (``table_encoding``),
which costs one more reading of the file.
"""

from dataclasses import dataclass
from pathlib import Path

from mlpcli.data.image_folder import image_shape
from mlpcli.data.npz import feature_shape as npz_feature_shape
from mlpcli.data.table_encoding import TableSettings
from mlpcli.data.tabular import table_encoding

# the datasets whose sample shape their files tell (the built-in ones have a fixed shape)
SHAPE_FROM_FILES = ("npz", "npy", "csv", "image_folder")


@dataclass(frozen=True)
class InferredShape:
    """A sample shape and where it was read: the file ``path`` (``source`` for short), and
    ``how`` what it says."""

    shape: list[int]
    path: Path
    source: str
    how: str


def infer_shape(data_cfg: dict) -> InferredShape:
    """The sample shape of the dataset that a resolved ``data:`` section describes (one of
    SHAPE_FROM_FILES); DataError or FileSystemError, naming the file, when it cannot be read."""
    kind, path = data_cfg["dataset"], Path(data_cfg["path"]).expanduser()
    if kind == "csv":
        encoding = table_encoding(path, data_cfg["label_column"], TableSettings.of(data_cfg))
        categories = sum(map(len, encoding.categories.values()))
        how = f"{len(encoding.columns)} feature columns" + (
            f", {len(encoding.categories)} of them categorical ({categories} categories)" if categories else "")
        return InferredShape([encoding.width], path, path.name, how)
    if kind in ("npz", "npy"):
        shape = npz_feature_shape(path, folder=kind == "npy")
        return InferredShape(list(shape), path, path.name, f"x_train holds samples of shape {shape}")
    if kind == "image_folder":
        shape, image = image_shape(path, data_cfg["color_mode"])
        return InferredShape(list(shape), image, str(image.relative_to(path.parent)),
                             f"{shape[1]}x{shape[0]} pixels, {data_cfg['color_mode']}")
    raise ValueError(f"the sample shape of dataset {kind!r} is not read from files")
