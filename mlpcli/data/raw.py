"""The unscaled arrays a loader returns, before ``load_dataset`` scales them."""

from dataclasses import dataclass

import numpy as np

from mlpcli.data.table_encoding import TableEncoding
from mlpcli.errors import DataError


@dataclass
class RawData:
    """Arrays as read from disk: features in their stored dtype, labels encoded.

    x_*: (n, *feature_shape), any numeric dtype. y_*: int64 (n,) class
    indices, or float32 (n, k) regression targets. Missing splits are None.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    class_names: list[str] | None = None
    table: TableEncoding | None = None  # how a table's cells became x
    w_train: np.ndarray | None = None  # float32 (n,): each training sample's weight, when the data gives them

    @classmethod
    def from_splits(cls, xs: dict, ys: dict, class_names: list[str] | None,
                    table: TableEncoding | None = None) -> "RawData":
        """From {"train"|"val"|"test": array} dicts of features and targets."""
        return cls(x_train=xs["train"], y_train=ys["train"], x_val=xs.get("val"), y_val=ys.get("val"),
                   x_test=xs.get("test"), y_test=ys.get("test"), class_names=class_names,
                   table=table)

    def check(self, source: str) -> None:
        """Raise DataError unless every x/y pair has matching lengths and shapes agree with train.

        ``source`` names the file or dataset in messages.
        """
        if len(self.x_train) == 0:
            raise DataError(f"{source}: has no training samples")
        if self.w_train is not None and len(self.w_train) != len(self.x_train):
            raise DataError(f"{source}: x_train has {len(self.x_train)} rows but w_train has {len(self.w_train)}")
        for split in ("train", "val", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x is None:
                continue
            if len(x) == 0:
                raise DataError(f"{source}: x_{split} has no samples; leave the {split} split out instead")
            if len(x) != len(y):
                raise DataError(f"{source}: x_{split} has {len(x)} rows but y_{split} has {len(y)}")
            if x.shape[1:] != self.x_train.shape[1:]:
                raise DataError(
                    f"{source}: x_{split} samples have shape {x.shape[1:]}, "
                    f"but x_train samples have shape {self.x_train.shape[1:]}"
                )
            if y.shape[1:] != self.y_train.shape[1:]:
                raise DataError(
                    f"{source}: y_{split} has shape {y.shape}, which does not match "
                    f"y_train's {self.y_train.shape}"
                )


def sample_weights(values: np.ndarray, where: str) -> np.ndarray:
    """``values`` as float32 (n,) sample weights, or a DataError naming the first that is not a
    finite number >= 0 (a weight multiplies its sample's loss, as Keras's ``sample_weight``)."""
    if values.ndim != 1 or values.dtype.kind not in "biuf":
        raise DataError(f"{where}: sample weights must be numbers of shape (n,), got dtype {values.dtype} "
                        f"shape {values.shape}")
    with np.errstate(over="ignore", invalid="ignore"):
        weights = values.astype(np.float32)
        bad = ~(np.isfinite(weights) & (weights >= 0))
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{where}: weight {values[i].item()!r} at index {i}; sample weights must be finite "
                        "numbers >= 0")
    return weights
