"""TensorData, the bundled datasets and load_dataset's argument checks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from fedsec.data import DATASETS, TensorData, load_dataset
from fedsec.errors import ConfigError, DataError, FedsecError


def test_registry_lists_every_dataset() -> None:
    assert DATASETS.names() == ["cifar10", "digits", "fmnist", "mnist1d", "svhn", "synthetic"]


def test_error_hierarchy() -> None:
    assert issubclass(ConfigError, FedsecError) and issubclass(ConfigError, ValueError)
    assert issubclass(DataError, FedsecError)


# -------------------------------------------------------------------------------------------- digits


def test_digits_shapes_and_train_statistics() -> None:
    train, test = load_dataset("digits")
    assert train.x.shape == (1437, 1, 8, 8) and test.x.shape == (360, 1, 8, 8)
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    assert train.num_classes == 10 and train.name == "digits" and test.name == "digits/test"
    assert abs(float(train.x.mean())) < 1e-5
    assert abs(float(train.x.std(unbiased=False)) - 1) < 1e-5


def test_digits_test_split_uses_train_statistics() -> None:
    train, test = load_dataset("digits", seed=5)
    raw = load_digits()
    pixels = raw.images.reshape(len(raw.images), -1) / 16.0
    # the documented split: scikit-learn's stratified train_test_split seeded with `seed`
    idx_tr, idx_te = train_test_split(np.arange(1797), test_size=0.2, random_state=5, stratify=raw.target)
    idx_tr, idx_te = np.sort(idx_tr), np.sort(idx_te)
    assert train.y.tolist() == raw.target[idx_tr].tolist() and test.y.tolist() == raw.target[idx_te].tolist()
    mu, sd = pixels[idx_tr].mean(), pixels[idx_tr].std()
    np.testing.assert_allclose(train.x.numpy().reshape(len(train), -1), (pixels[idx_tr] - mu) / sd, atol=1e-5)
    np.testing.assert_allclose(test.x.numpy().reshape(len(test), -1), (pixels[idx_te] - mu) / sd, atol=1e-5)
    # statistics of all the data would give a measurably different test set
    mu_all, sd_all = pixels.mean(), pixels.std()
    assert np.abs((pixels[idx_te] - mu_all) / sd_all - test.x.numpy().reshape(len(test), -1)).max() > 1e-4


def test_digits_split_is_stratified_and_seeded() -> None:
    a_tr, a_te = load_dataset("digits", seed=1)
    b_tr, b_te = load_dataset("digits", seed=1)
    c_tr, _ = load_dataset("digits", seed=2)
    assert torch.equal(a_tr.x, b_tr.x) and torch.equal(a_te.y, b_te.y)
    assert not torch.equal(a_tr.y, c_tr.y)
    full = np.bincount(load_digits().target, minlength=10) / 1797
    test_share = np.bincount(a_te.y.numpy(), minlength=10) / len(a_te)
    assert np.abs(test_share - full).max() < 0.01


def test_test_fraction() -> None:
    train, test = load_dataset("digits", test_fraction=0.5)
    assert abs(len(test) - 1797 / 2) <= 1 and len(train) + len(test) == 1797
    for bad in (0, 1, -0.1, 1.5, True, "0.2"):
        with pytest.raises(ConfigError, match="test_fraction"):
            load_dataset("digits", test_fraction=bad)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------- synthetic


def test_synthetic_shapes_options_and_determinism() -> None:
    train, test = load_dataset("synthetic", seed=7, n_samples=300, n_features=5, n_classes=3)
    assert train.x.shape == (240, 5) and test.x.shape == (60, 5) and train.num_classes == 3
    again, _ = load_dataset("synthetic", seed=7, n_samples=300, n_features=5, n_classes=3)
    other, _ = load_dataset("synthetic", seed=8, n_samples=300, n_features=5, n_classes=3)
    assert torch.equal(train.x, again.x) and not torch.equal(train.x, other.x)
    assert np.bincount(train.y.numpy()).tolist() == [80, 80, 80]
    np.testing.assert_allclose(train.x.mean(0).numpy(), 0, atol=1e-5)


def test_synthetic_is_learnable_but_not_trivial() -> None:
    train, test = load_dataset("synthetic", seed=0)
    acc = LogisticRegression(max_iter=500).fit(train.x.numpy(), train.y.numpy()).score(test.x, test.y)
    assert 0.6 < acc < 0.97
    easy, easy_test = load_dataset("synthetic", seed=0, class_sep=3.0)
    acc_easy = (
        LogisticRegression(max_iter=500).fit(easy.x.numpy(), easy.y.numpy()).score(easy_test.x, easy_test.y)
    )
    assert acc_easy > acc


@pytest.mark.parametrize(
    ("opts", "msg"),
    [
        ({"n_samples": 1}, "n_samples"),
        ({"n_features": 0}, "n_features"),
        ({"n_classes": 1}, "n_classes"),
        ({"n_samples": 5, "n_classes": 4}, "n_samples >= 2\\*n_classes"),
        ({"class_sep": 0}, "class_sep"),
        ({"n_samples": 2.5}, "n_samples"),
        ({"n_sample": 10}, "unknown option.*n_sample.*want some of: n_samples, n_features"),
    ],
)
def test_synthetic_bad_options(opts: dict[str, Any], msg: str) -> None:
    with pytest.raises(ConfigError, match=msg):
        load_dataset("synthetic", **opts)


def test_unknown_dataset_lists_known_names() -> None:
    with pytest.raises(ConfigError, match="unknown dataset 'mnist'; want one of: cifar10, digits, fmnist"):
        load_dataset("mnist")


def test_digits_takes_no_options() -> None:
    with pytest.raises(ConfigError, match=r"max_train.*\(none\)"):
        load_dataset("digits", max_train=10)


# ---------------------------------------------------------------------------------------- TensorData


def _td(n: int = 4, **kw: Any) -> TensorData:
    args: dict[str, object] = {
        "x": torch.zeros(n, 3),
        "y": torch.arange(n) % 2,
        "num_classes": 2,
        "name": "t",
    }
    args.update(kw)
    return TensorData(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "msg"),
    [
        ({"y": torch.zeros(3, dtype=torch.int64)}, "len\\(x\\)=4, len\\(y\\)=3"),
        ({"x": torch.zeros(4, 3, dtype=torch.float64)}, "float32"),
        ({"y": torch.zeros(4, dtype=torch.int32)}, "int64"),
        ({"y": torch.tensor([0, 1, 2, 0])}, r"labels in \[0, 2\]; want them in \[0, 2\)"),
        ({"y": torch.tensor([0, -1, 1, 0])}, "labels in"),
        ({"num_classes": 1}, "num_classes"),
        ({"x": torch.zeros(4)}, "at least 2 dims"),
        ({"x": np.zeros((4, 3), np.float32)}, "torch.Tensor"),
    ],
)
def test_tensordata_validation(kw: dict[str, Any], msg: str) -> None:
    with pytest.raises(DataError, match=msg):
        _td(**kw)


def test_tensordata_subset_and_len() -> None:
    d = TensorData(
        torch.arange(12, dtype=torch.float32).reshape(6, 2), torch.tensor([0, 1, 2, 0, 1, 2]), 3, "t"
    )
    assert len(d) == 6 and d.input_shape == (2,)
    s = d.subset(np.array([4, 1]))
    assert s.y.tolist() == [1, 1] and s.x[0].tolist() == [8.0, 9.0] and s.num_classes == 3
    assert torch.equal(d.subset(torch.tensor([5])).x, d.x[5:6])
    assert len(d.subset(np.array([], dtype=np.int64))) == 0
    with pytest.raises(DataError, match="want < 6"):
        d.subset(np.array([6]))
    with pytest.raises(DataError, match="1-d integers"):
        d.subset(np.array([True] * 6))
    with pytest.raises(DataError, match="1-d integers"):
        d.subset(np.array([0.5]))


def test_tensordata_is_frozen() -> None:
    d = _td()
    with pytest.raises(AttributeError):
        d.name = "other"  # type: ignore[misc]


def test_tensordata_compares_by_identity() -> None:
    d = _td()
    assert d == d and d != _td() and len({d, d}) == 1
