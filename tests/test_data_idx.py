"""IDX reader: hand-built files, plain and gzip'd, good and broken."""

import gzip
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlpcli.data.idx import IDX_DTYPES, read_idx
from mlpcli.errors import DataError


def idx_bytes(code: int, dims: tuple, payload: bytes) -> bytes:
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + payload


def write(path, data: bytes, gz: bool = False):
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def test_uint8_3d_plain(tmp_path):
    values = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = write(tmp_path / "images-idx3-ubyte", idx_bytes(0x08, (2, 3, 4), values.tobytes()))
    out = read_idx(path)
    assert out.dtype == np.uint8
    assert out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, values)


def test_uint8_1d_gzip(tmp_path):
    labels = np.array([5, 0, 4, 1, 9], dtype=np.uint8)
    path = write(
        tmp_path / "labels-idx1-ubyte.gz", idx_bytes(0x08, (5,), labels.tobytes()), gz=True
    )
    out = read_idx(path)
    assert out.shape == (5,)
    np.testing.assert_array_equal(out, labels)


def test_compression_is_detected_from_content_not_name(tmp_path):
    path = write(tmp_path / "plain.gz", idx_bytes(0x08, (3,), b"\x01\x02\x03"))
    np.testing.assert_array_equal(read_idx(path), [1, 2, 3])


def test_multibyte_values_are_big_endian_and_returned_native(tmp_path):
    path = write(tmp_path / "a.idx", idx_bytes(0x0B, (3,), struct.pack(">3h", -2, 300, 7)))
    out = read_idx(path)
    np.testing.assert_array_equal(out, [-2, 300, 7])
    assert out.dtype == np.int16 and out.dtype.isnative
    path = write(tmp_path / "f.idx", idx_bytes(0x0E, (2,), struct.pack(">2d", 1.5, -0.25)))
    np.testing.assert_array_equal(read_idx(path), [1.5, -0.25])


@settings(max_examples=40, deadline=None)
@given(
    code=st.sampled_from(sorted(IDX_DTYPES)),
    dims=st.lists(st.integers(0, 4), min_size=1, max_size=3),
    gz=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_round_trip(tmp_path_factory, code, dims, gz, seed):
    dtype = IDX_DTYPES[code]
    values = np.random.default_rng(seed).integers(-100, 100, size=dims).astype(dtype)
    path = tmp_path_factory.mktemp("idx") / "x.idx"
    write(path, idx_bytes(code, tuple(dims), values.tobytes()), gz=gz)
    out = read_idx(path)
    assert out.shape == tuple(dims)
    np.testing.assert_array_equal(out, values)


def test_truncated_data_is_an_error(tmp_path):
    path = write(tmp_path / "t.idx", idx_bytes(0x08, (2, 3, 4), bytes(23)), gz=True)
    with pytest.raises(DataError, match=r"t\.idx: IDX data truncated.*need 24 bytes.*found 23"):
        read_idx(path)


def test_trailing_bytes_are_an_error(tmp_path):
    path = write(tmp_path / "t.idx", idx_bytes(0x08, (2,), bytes(3)))
    with pytest.raises(DataError, match="trailing bytes"):
        read_idx(path)


def test_truncated_header_is_an_error(tmp_path):
    path = write(tmp_path / "t.idx", idx_bytes(0x08, (2, 3), b"")[:9])
    with pytest.raises(DataError, match="truncated IDX header"):
        read_idx(path)


def test_bad_magic_is_an_error(tmp_path):
    path = write(tmp_path / "junk.idx", b"hello world, not idx")
    with pytest.raises(DataError, match=r"junk\.idx: not an IDX file"):
        read_idx(path)


def test_unknown_dtype_code_is_an_error(tmp_path):
    path = write(tmp_path / "t.idx", idx_bytes(0x07, (1,), b"\x00"))
    with pytest.raises(DataError, match="unknown IDX dtype code 0x07"):
        read_idx(path)


def test_truncated_gzip_is_an_error(tmp_path):
    data = gzip.compress(idx_bytes(0x08, (100,), bytes(range(100))))
    path = tmp_path / "cut.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut\.gz: corrupt or truncated gzip"):
        read_idx(path)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(DataError, match="nope.idx: cannot read"):
        read_idx(tmp_path / "nope.idx")
