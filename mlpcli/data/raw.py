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
