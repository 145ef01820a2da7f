"""Loaders on small files written here in each standard distribution format."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from fedsec.data import load_dataset
from fedsec.data.formats import read_cifar_batch, read_idx, read_svhn_mat
from fedsec.errors import ConfigError, DataError


def idx_bytes(arr: np.ndarray, type_byte: int = 0x08, dtype: str = ">u1") -> bytes:
    """IDX encoding written independently of the reader: magic, big-endian sizes, big-endian body."""
    header = bytes([0, 0, type_byte, arr.ndim]) + b"".join(struct.pack(">I", s) for s in arr.shape)
    return header + arr.astype(dtype).tobytes()


def write_fmnist(d: Path, n_train: int = 30, n_test: int = 12, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, n_train).astype(np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    d.mkdir(parents=True, exist_ok=True)
    for name, a in arrays.items():
        (d / name).write_bytes(gzip.compress(idx_bytes(a)))
    return arrays


# ---------------------------------------------------------------------------------------------- IDX


def test_idx_known_answer_int32_big_endian(tmp_path: Path) -> None:
    raw = bytes([0, 0, 0x0C, 2, 0, 0, 0, 1, 0, 0, 0, 2]) + bytes([0, 0, 1, 0, 0xFF, 0xFF, 0xFF, 0xFF])
    (tmp_path / "a.idx").write_bytes(raw)
    out = read_idx(tmp_path / "a.idx")
    assert out.shape == (1, 2)
    assert out.tolist() == [[256, -1]]


def test_idx_gzip_and_plain_agree(tmp_path: Path) -> None:
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "p.idx").write_bytes(idx_bytes(a))
    (tmp_path / "g.idx.gz").write_bytes(gzip.compress(idx_bytes(a)))
    assert np.array_equal(read_idx(tmp_path / "p.idx"), a)
    assert np.array_equal(read_idx(tmp_path / "g.idx.gz"), a)


@pytest.mark.parametrize(
    ("raw", "msg"),
    [
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x07", "magic"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x07", "type byte"),
        (b"\x00\x00\x08\x02\x00\x00\x00\x01", "header"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x03\x07\x07", "data bytes"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x01\x07\x07", "data bytes"),
        (b"", "magic"),
    ],
)
def test_idx_malformed_rejected(tmp_path: Path, raw: bytes, msg: str) -> None:
    (tmp_path / "bad").write_bytes(raw)
    with pytest.raises(DataError, match=msg):
        read_idx(tmp_path / "bad")


def test_idx_truncated_gzip_rejected(tmp_path: Path) -> None:
    (tmp_path / "t.gz").write_bytes(gzip.compress(idx_bytes(np.zeros((5, 5), np.uint8)))[:-6])
    with pytest.raises(DataError, match="gzip"):
        read_idx(tmp_path / "t.gz")


@pytest.mark.parametrize("sub", ["fmnist", "fashion-mnist", "FashionMNIST/raw", ""])
def test_fmnist_loader(tmp_path: Path, sub: str) -> None:
    arrays = write_fmnist(tmp_path / sub if sub else tmp_path)
    train, test = load_dataset("fmnist", tmp_path)
    assert train.x.shape == (30, 1, 28, 28) and test.x.shape == (12, 1, 28, 28)
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    assert train.y.tolist() == arrays["train-labels-idx1-ubyte.gz"].tolist()
    assert test.y.tolist() == arrays["t10k-labels-idx1-ubyte.gz"].tolist()
    # normalization with the training split's statistics, recomputed here from the raw pixels
    raw_tr = arrays["train-images-idx3-ubyte.gz"].astype(np.float64) / 255
    raw_te = arrays["t10k-images-idx3-ubyte.gz"].astype(np.float64) / 255
    mu, sd = raw_tr.mean(), raw_tr.std()
    np.testing.assert_allclose(test.x.numpy()[:, 0], (raw_te - mu) / sd, atol=1e-5)
    np.testing.assert_allclose(train.x.numpy()[:, 0], (raw_tr - mu) / sd, atol=1e-5)
    assert train.input_shape == (1, 28, 28) and train.num_classes == 10


def test_fmnist_max_train_keeps_a_seeded_subset(tmp_path: Path) -> None:
    arrays = write_fmnist(tmp_path)
    a, _ = load_dataset("fmnist", tmp_path, seed=3, max_train=7, max_test=5)
    b, tb = load_dataset("fmnist", tmp_path, seed=3, max_train=7, max_test=5)
    c, _ = load_dataset("fmnist", tmp_path, seed=4, max_train=7)
    assert len(a) == 7 and len(tb) == 5
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.y, c.y) or not torch.equal(a.x, c.x)
    assert set(a.y.tolist()) <= set(arrays["train-labels-idx1-ubyte.gz"].tolist())
    with pytest.raises(ConfigError, match="max_train"):
        load_dataset("fmnist", tmp_path, max_train=0)


def test_fmnist_label_out_of_range_rejected(tmp_path: Path) -> None:
    write_fmnist(tmp_path)
    bad = np.array([0, 11] + [1] * 28, dtype=np.uint8)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(bad)))
    with pytest.raises(DataError, match=r"labels in \[0, 11\]"):
        load_dataset("fmnist", tmp_path)


# --------------------------------------------------------------------------------------------- SVHN


def write_svhn(path: Path, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    y = rng.integers(1, 11, (n, 1)).astype(np.uint8)
    y[0, 0] = 10
    scipy.io.savemat(str(path), {"X": x, "y": y})
    return x, y


def test_svhn_layout_and_label_ten_is_zero(tmp_path: Path) -> None:
    x, y = write_svhn(tmp_path / "m.mat", 6, 0)
    xs, ys = read_svhn_mat(tmp_path / "m.mat")
    assert xs.shape == (6, 3, 32, 32) and xs.dtype == np.uint8
    assert ys[0] == 0 and ys.tolist() == [int(v) % 10 for v in y[:, 0]]
    n, c, h, w = 4, 2, 5, 17
    assert xs[n, c, h, w] == x[h, w, c, n]


def test_svhn_loader(tmp_path: Path) -> None:
    (tmp_path / "svhn").mkdir()
    write_svhn(tmp_path / "svhn" / "train_32x32.mat", 9, 1)
    write_svhn(tmp_path / "svhn" / "test_32x32.mat", 4, 2)
    train, test = load_dataset("svhn", tmp_path)
    assert train.x.shape == (9, 3, 32, 32) and test.x.shape == (4, 3, 32, 32)
    per_channel_mean = train.x.mean(dim=(0, 2, 3))
    per_channel_std = train.x.std(dim=(0, 2, 3), unbiased=False)
    assert torch.allclose(per_channel_mean, torch.zeros(3), atol=1e-4)
    assert torch.allclose(per_channel_std, torch.ones(3), atol=1e-4)
    assert int(train.y.min()) >= 0 and int(train.y.max()) <= 9


@pytest.mark.parametrize(
    ("contents", "msg"),
    [
        ({"X": np.zeros((32, 32, 3, 2), np.uint8)}, "want 'X' and 'y'"),
        ({"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[1], [0]])}, r"want them in \[1, 10\]"),
        ({"X": np.zeros((32, 32, 2), np.uint8), "y": np.array([[1], [2]])}, r"\(H, W, 3, N\)"),
    ],
)
def test_svhn_malformed_rejected(tmp_path: Path, contents: dict[str, np.ndarray], msg: str) -> None:
    scipy.io.savemat(str(tmp_path / "b.mat"), contents)
    with pytest.raises(DataError, match=msg):
        read_svhn_mat(tmp_path / "b.mat")


def test_svhn_not_a_mat_file(tmp_path: Path) -> None:
    (tmp_path / "b.mat").write_bytes(b"hello, not matlab")
    with pytest.raises(DataError, match="MATLAB"):
        read_svhn_mat(tmp_path / "b.mat")


# -------------------------------------------------------------------------------------------- CIFAR


def write_cifar_batch(path: Path, n: int, seed: int, protocol: int = 2) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, n)]
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"x", b"data": data, b"labels": labels}, f, protocol=protocol)
    return data, labels


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar_batch_layout(tmp_path: Path, protocol: int) -> None:
    data, labels = write_cifar_batch(tmp_path / "b", 5, 0, protocol)
    x, y = read_cifar_batch(tmp_path / "b")
    assert x.shape == (5, 3, 32, 32) and y.tolist() == labels
    n, c, h, w = 3, 1, 7, 30  # channel-major planes of 32x32, row-major within a plane
    assert x[n, c, h, w] == data[n, c * 1024 + h * 32 + w]


def test_cifar10_loader(tmp_path: Path) -> None:
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    labels: list[int] = []
    for i in range(1, 6):
        labels += write_cifar_batch(d / f"data_batch_{i}", 3, i)[1]
    write_cifar_batch(d / "test_batch", 4, 9)
    train, test = load_dataset("cifar10", tmp_path)
    assert train.x.shape == (15, 3, 32, 32) and test.x.shape == (4, 3, 32, 32)
    assert train.y.tolist() == labels


class _Evil:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (str(self.target),))


def test_cifar_refuses_arbitrary_pickle_globals(tmp_path: Path) -> None:
    target = tmp_path / "created_by_pickle"
    (tmp_path / "evil").write_bytes(pickle.dumps({b"data": _Evil(target), b"labels": []}))
    with pytest.raises(DataError, match="refusing"):
        read_cifar_batch(tmp_path / "evil")
    assert not target.exists()


@pytest.mark.parametrize(
    ("obj", "msg"),
    [
        ({b"data": np.zeros((2, 3072), np.uint8)}, "b'labels'"),
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, r"\(N, 3072\)"),
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "uint8"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, r"want them in \[0, 10\)"),
        ([1, 2], "want a dict"),
    ],
)
def test_cifar_malformed_rejected(tmp_path: Path, obj: object, msg: str) -> None:
    (tmp_path / "b").write_bytes(pickle.dumps(obj, protocol=2))
    with pytest.raises(DataError, match=msg):
        read_cifar_batch(tmp_path / "b")


# ------------------------------------------------------------------------------------ missing files


@pytest.mark.parametrize(
    ("name", "expected", "how"),
    [
        ("fmnist", "fmnist/train-images-idx3-ubyte.gz", "zalandoresearch"),
        ("svhn", "svhn/train_32x32.mat", "ufldl.stanford.edu"),
        ("cifar10", "cifar-10-batches-py/data_batch_1", "cs.toronto.edu"),
    ],
)
def test_missing_files_name_the_path_and_the_source(
    tmp_path: Path, name: str, expected: str, how: str
) -> None:
    with pytest.raises(DataError) as e:
        load_dataset(name, tmp_path)
    assert str(tmp_path / expected) in str(e.value)
    assert how in str(e.value)


def test_partly_present_files_name_what_is_missing(tmp_path: Path) -> None:
    write_fmnist(tmp_path / "fmnist")
    (tmp_path / "fmnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as e:
        load_dataset("fmnist", tmp_path)
    assert "t10k-labels-idx1-ubyte.gz" in str(e.value)
    assert "train-images" not in str(e.value).split(";")[0]


def test_default_data_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDSEC_DATA_DIR", str(tmp_path))
    write_fmnist(tmp_path / "fmnist")
    train, _ = load_dataset("fmnist")
    assert len(train) == 30


def test_cifar_batch_with_legacy_numpy_module_path(tmp_path: Path) -> None:
    """The distributed batches were pickled by old numpy, whose arrays name ``numpy.core.multiarray``."""
    data = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    raw = pickle.dumps({b"data": data, b"labels": [3, 4]}, protocol=2)
    legacy = raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    assert b"numpy.core.multiarray" in legacy
    (tmp_path / "b").write_bytes(legacy)
    x, y = read_cifar_batch(tmp_path / "b")
    assert y.tolist() == [3, 4] and np.array_equal(x.reshape(2, -1), data)
