""".npy and .npz files as untrusted data: headers are checked before anything is allocated
(mlpcli.data.npy), for dataset loading and for ``mlp predict --npy`` alike."""

import re
import tracemalloc
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner
from numpy.lib import format as npy_format

from mlpcli.cli import main
from mlpcli.data import load_dataset
from mlpcli.data.mapped import is_mapped
from mlpcli.data.npz import load_npz
from mlpcli.errors import DataError

HUGE_SHAPE = (10**12, 784)


def npy_bytes_claiming(shape, dtype="<f4", data=b"\0" * 64):
    """An .npy file's bytes whose header declares ``shape`` but which holds only ``data``."""
    import io

    buffer = io.BytesIO()
    npy_format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue() + data


def npz_with(path, members, compression=zipfile.ZIP_STORED):
    """An .npz at ``path`` of {name: .npy bytes or array}, written member by member."""
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, content in members.items():
            if isinstance(content, np.ndarray):
                with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                    npy_format.write_array(member, content, allow_pickle=False)
            else:
                archive.writestr(f"{name}.npy", content)
    return path


def peak_traced_bytes(call):
    """The peak of memory traced (numpy's arrays included) while ``call()`` runs, and its result
    or the DataError it raised."""
    tracemalloc.start()
    try:
        try:
            outcome = call()
        except DataError as e:
            outcome = e
        return tracemalloc.get_traced_memory()[1], outcome
    finally:
        tracemalloc.stop()


def test_compressed_bomb_is_refused_before_decompressing(tmp_path):
    """80 MiB of zeros compress about 1029:1 into an 80 kB member: refused from its zip entry."""
    path = npz_with(tmp_path / "bomb.npz", {"x_train": np.zeros((20, 2**20), np.float32),
                                            "y_train": np.zeros(20, np.int64)}, zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 200_000
    peak, outcome = peak_traced_bytes(lambda: load_npz(path))
    assert isinstance(outcome, DataError)
    assert "bomb.npz: array 'x_train'" in str(outcome) and "decompression bomb" in str(outcome)
    assert peak < 8 * 2**20


def test_ordinary_compressed_file_still_loads(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (2000, 784)).astype(np.uint8)
    np.savez_compressed(tmp_path / "d.npz", x_train=x, y_train=np.zeros(2000, np.uint8))
    np.testing.assert_array_equal(load_npz(tmp_path / "d.npz").x_train, x)


@pytest.mark.parametrize("member", ["x_train", "y_train"])
def test_npz_header_claiming_a_huge_shape_is_refused(tmp_path, member):
    arrays = {"x_train": np.zeros((2, 3), np.float32), "y_train": np.zeros(2, np.int64)}
    arrays[member] = npy_bytes_claiming(HUGE_SHAPE)
    path = npz_with(tmp_path / "d.npz", arrays)
    peak, outcome = peak_traced_bytes(lambda: load_npz(path))
    assert isinstance(outcome, DataError)
    assert f"d.npz: array '{member}': the header claims shape (1000000000000, 784)" in str(outcome)
    assert peak < 8 * 2**20


def test_arrays_larger_than_the_memory_available_are_refused(tmp_path, monkeypatch):
    # compressed: x_train cannot be mapped, so it would be read into memory
    np.savez_compressed(tmp_path / "d.npz", x_train=np.zeros((100, 10), np.float32),
                        y_train=np.zeros(100, np.int64))
    monkeypatch.setattr("mlpcli.data.npy.available_memory", lambda: 4000)
    with pytest.raises(DataError, match=r"d\.npz: the arrays need .* more than the 0\.0 GiB of memory"):
        load_npz(tmp_path / "d.npz")


def test_mapped_features_are_not_counted_against_the_memory_available(tmp_path, monkeypatch):
    # stored: x_train (4,000 bytes) is mapped; only y_train (800 bytes) is read into memory
    x = np.arange(1000, dtype=np.float32).reshape(100, 10)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.zeros(100, np.int64))
    monkeypatch.setattr("mlpcli.data.npy.available_memory", lambda: 1000)
    raw = load_npz(tmp_path / "d.npz")
    assert is_mapped(raw.x_train)
    np.testing.assert_array_equal(raw.x_train, x)


def test_available_memory_is_known_here():
    from mlpcli.data import npy

    assert 0 < npy.available_memory() < 2**50


def test_non_finite_features_name_the_array_and_index(tmp_path):
    x = np.zeros((4, 2, 3), np.float32)
    x[2, 1, 0] = np.nan
    np.savez(tmp_path / "d.npz", x_train=np.zeros((3, 1)), y_train=np.zeros(3, np.int64),
             x_test=x, y_test=np.zeros(4, np.int64))
    with pytest.raises(DataError, match=r"d\.npz: x_test holds nan at index \(2, 1, 0\)"):
        load_dataset({"dataset": "npz", "path": str(tmp_path / "d.npz")})
    x[2, 1, 0] = -np.inf
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.zeros(4, np.int64))
    with pytest.raises(DataError, match=r"d\.npz: x_train holds -inf at index \(2, 1, 0\)"):
        load_npz(tmp_path / "d.npz")


def test_empty_test_split_is_refused(tmp_path):
    np.savez(tmp_path / "d.npz", x_train=np.zeros((3, 2)), y_train=np.zeros(3, np.int64),
             x_test=np.zeros((0, 2)), y_test=np.zeros(0, np.int64))
    with pytest.raises(DataError, match=r"d\.npz: x_test has no samples"):
        load_dataset({"dataset": "npz", "path": str(tmp_path / "d.npz")})


@pytest.mark.parametrize("labels, shown", [
    (np.array([0, 2**64 - 1], np.uint64), "18446744073709551615"),
    (np.array([0, 2**63], np.uint64), "9223372036854775808"),
    (np.array([0.0, 1e30]), "1e+30"),
])
def test_labels_too_large_are_shown_with_their_true_value(tmp_path, labels, shown):
    np.savez(tmp_path / "d.npz", x_train=np.zeros((2, 1)), y_train=labels)
    with pytest.raises(DataError, match=re.escape(f"y_train: class label {shown} at index 1 is too large")):
        load_npz(tmp_path / "d.npz")


# ------------------------------------------------------------------ mlp predict --npy


def predict_npy(run_dir, path):
    return CliRunner().invoke(main, ["predict", "--run", str(run_dir), "--npy", str(path)])


def assert_refused(result, *words):
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert result.output.startswith("Error:") and "Traceback" not in result.output
    for word in words:
        assert word in result.output, (word, result.output)


@pytest.mark.parametrize("shape", [(0, 784), (0,), (0, 0), ()])
def test_predict_npy_without_rows_is_refused(tiny_run, tmp_path, shape):
    path = tmp_path / "rows.npy"
    np.save(path, np.zeros(shape, np.float32))
    assert_refused(predict_npy(tiny_run, path), str(path), str(shape))


def test_predict_npy_header_claiming_a_huge_shape_is_refused(tiny_run, tmp_path):
    path = tmp_path / "rows.npy"
    path.write_bytes(npy_bytes_claiming(HUGE_SHAPE))
    assert_refused(predict_npy(tiny_run, path), str(path), "the header claims shape (1000000000000, 784)")


def test_predict_npy_given_an_npz_is_refused(tiny_run, tmp_path):
    path = tmp_path / "rows.npy"  # named .npy, holding an .npz archive
    with open(path, "wb") as f:
        np.savez(f, x=np.zeros((1, 784)))
    assert_refused(predict_npy(tiny_run, path), str(path), "is an .npz archive")


def test_predict_npy_still_predicts(tiny_run, tmp_path):
    path = tmp_path / "rows.npy"
    np.save(path, np.zeros((3, 784), np.float32))
    result = predict_npy(tiny_run, path)
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in result.output.splitlines()] == [f"{path}[{i}]" for i in range(3)]
