"""Registry of built-in IDX datasets (MNIST, Fashion-MNIST) and their loader.

MNIST ships inside the package; Fashion-MNIST is downloaded on first use
into the data cache (see ``download.default_cache_dir``).
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlpcli.data.download import Checksum, checksum_problem, default_cache_dir, fetch
from mlpcli.data.idx import read_idx
from mlpcli.data.raw import RawData
from mlpcli.errors import DataError

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"

BUNDLED_ROOT = Path(__file__).parent / "files"


@dataclass(frozen=True)
class BuiltinDataset:
    """Where the four IDX files of a dataset come from and how to verify them.

    ``checksums`` maps each of the four file names to its checksum;
    ``bundled_dir`` (or None) holds copies shipped with the package, tried
    before the cache and the mirrors (base URLs, tried in order).
    """

    name: str
    class_names: tuple[str, ...]
    checksums: dict[str, Checksum]
    mirrors: tuple[str, ...]
    bundled_dir: Path | None = None


BUILTINS: dict[str, BuiltinDataset] = {
    "mnist": BuiltinDataset(
        name="mnist",
        class_names=tuple(str(d) for d in range(10)),
        # The bundled .gz files were recompressed, so they differ from the
        # mirrors' .gz bytes; the decompressed content is the same everywhere.
        checksums={
            TRAIN_IMAGES: Checksum("6bbc9ace898e44ae57da46a324031adb", "gunzipped"),
            TRAIN_LABELS: Checksum("a25bea736e30d166cdddb491f175f624", "gunzipped"),
            TEST_IMAGES: Checksum("2646ac647ad5339dbf082846283269ea", "gunzipped"),
            TEST_LABELS: Checksum("27ae3e4e09519cfbb04c329615203637", "gunzipped"),
        },
        mirrors=(
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
        ),
        bundled_dir=BUNDLED_ROOT / "mnist",
    ),
    "fashion_mnist": BuiltinDataset(
        name="fashion_mnist",
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        # Published md5s of the .gz files (zalandoresearch/fashion-mnist README).
        checksums={
            TRAIN_IMAGES: Checksum("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "file"),
            TRAIN_LABELS: Checksum("25c81989df183df01b3e8a0aad5dffbe", "file"),
            TEST_IMAGES: Checksum("bef4ecab320f06d8554ea6380940ec79", "file"),
            TEST_LABELS: Checksum("bb300cfdad3c16e7a12a480ee83cd310", "file"),
        },
        mirrors=(
            "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        ),
    ),
}


def locate_file(
    spec: BuiltinDataset, filename: str, progress: Callable[[str], None] | None = None
) -> Path:
    """Path of a verified copy of one of ``spec``'s files: bundled, cached or downloaded."""
    checksum = spec.checksums[filename]
    if spec.bundled_dir is None:
        return fetch(
            filename, spec.mirrors, checksum, default_cache_dir(spec.name), progress=progress
        )
    bundled = spec.bundled_dir / filename
    problem = checksum_problem(bundled, checksum)
    if problem is None:
        return bundled
    if progress:
        progress(f"bundled {bundled} is unusable ({problem}); looking for a downloaded copy")
    try:
        return fetch(
            filename, spec.mirrors, checksum, default_cache_dir(spec.name), progress=progress
        )
    except DataError as e:
        raise DataError(f"bundled {bundled} is unusable ({problem}), and {e}") from None


def _read_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an images/labels IDX pair: uint8 (n, 28, 28) and int64 (n,)."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(
            f"{labels_path}: labels of shape {labels.shape} do not match "
            f"{len(images)} images in {images_path}"
        )
    return images, labels.astype(np.int64)


def load_builtin(name: str, progress: Callable[[str], None] | None = None) -> RawData:
    """Load built-in dataset ``name``: uint8 images (n, 28, 28), int64 labels (n,)."""
    spec = BUILTINS[name]
    paths = {f: locate_file(spec, f, progress) for f in spec.checksums}
    x_train, y_train = _read_pair(paths[TRAIN_IMAGES], paths[TRAIN_LABELS])
    x_test, y_test = _read_pair(paths[TEST_IMAGES], paths[TEST_LABELS])
    return RawData(
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        class_names=list(spec.class_names),
    )
