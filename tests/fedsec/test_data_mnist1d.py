"""MNIST-1D: generated locally (never downloaded), deterministic for a seed, cached by its parameters."""

from __future__ import annotations

import random
import socket
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from fedsec.data import load_dataset, partition
from fedsec.data import mnist1d as m1d
from fedsec.errors import ConfigError, DataError

SMALL = {"n_train": 160, "n_test": 40}


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any socket opened (a download, a DNS lookup) fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("mnist1d tried to open a network connection")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_shapes_labels_and_train_statistics(tmp_path: Path, no_network: None) -> None:
    train, test = load_dataset("mnist1d", tmp_path, **SMALL, length=24)
    assert train.x.shape == (160, 1, 24) and test.x.shape == (40, 1, 24)
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    assert train.num_classes == test.num_classes == 10 and train.input_shape == (1, 24)
    assert (train.name, test.name) == ("mnist1d", "mnist1d/test")
    # one channel, standardized with the training split's statistics only
    assert abs(float(train.x.mean())) < 1e-5 and abs(float(train.x.std(unbiased=False)) - 1) < 1e-4
    assert abs(float(test.x.mean())) > 1e-6
    # the package draws (n_train + n_test) / 10 examples per class
    counts = torch.bincount(torch.cat([train.y, test.y]), minlength=10)
    assert counts.tolist() == [20] * 10


def test_generation_is_deterministic_and_needs_no_network(no_network: None) -> None:
    a = m1d.generate(60, 40, 40, generator_seed=7)
    b = m1d.generate(60, 40, 40, generator_seed=7)
    c = m1d.generate(60, 40, 40, generator_seed=8)
    for k in ("x", "y", "x_test", "y_test"):
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["x"], c["x"])
    assert a["x"].shape == (60, 40) and a["x_test"].shape == (40, 40) and a["y"].dtype == np.int64


def test_generation_leaves_the_global_generators_alone() -> None:
    np.random.seed(123)  # noqa: NPY002
    random.seed(123)
    m1d.generate(20, 10, 16, generator_seed=0)
    after = (np.random.random(), random.random())  # noqa: NPY002
    np.random.seed(123)  # noqa: NPY002
    random.seed(123)
    assert after == (np.random.random(), random.random())  # noqa: NPY002


def test_cache_is_keyed_by_parameters_and_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None
) -> None:
    first, _ = load_dataset("mnist1d", tmp_path, **SMALL)
    path = m1d.cache_path(tmp_path, 160, 40, 40, 42)
    assert path.is_file() and path.parent == tmp_path / "mnist1d"
    assert not list(path.parent.glob("*.tmp"))

    def no_generation(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("generated again although the cache holds the data")

    monkeypatch.setattr(m1d, "generate", no_generation)
    again, _ = load_dataset("mnist1d", tmp_path, **SMALL)
    assert torch.equal(first.x, again.x) and torch.equal(first.y, again.y)
    # another seed is another file: generated, not read from the first one's cache
    with pytest.raises(AssertionError, match="generated again"):
        load_dataset("mnist1d", tmp_path, **SMALL, generator_seed=1)


def test_run_seed_does_not_change_the_data(tmp_path: Path) -> None:
    a, _ = load_dataset("mnist1d", tmp_path, seed=0, **SMALL)
    b, _ = load_dataset("mnist1d", tmp_path, seed=5, **SMALL)
    assert torch.equal(a.x, b.x)


@pytest.mark.parametrize("scheme", ["dirichlet", "shards"])
def test_partitions_work_on_it(tmp_path: Path, scheme: str) -> None:
    train, _ = load_dataset("mnist1d", tmp_path, **SMALL)
    kw: dict[str, Any] = {"beta": 0.1} if scheme == "dirichlet" else {}
    parts = partition(train.y.numpy(), 8, scheme, min_samples=4, rng=np.random.default_rng(0), **kw)
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(train)))
    assert min(len(p) for p in parts) >= 4


@pytest.mark.parametrize(
    ("opts", "msg"),
    [
        ({"n_train": 155, "n_test": 40}, "got n_train \\+ n_test = 195; want a multiple of 10"),
        ({"n_train": 0}, "n_train: got 0; want an int >= 10"),
        ({"length": 4}, "length: got 4; want an int >= 8"),
        ({"generator_seed": -1}, "generator_seed"),
        ({"n_test": 2.5}, "n_test"),
        ({"size": 3}, "unknown option"),
    ],
)
def test_bad_options(tmp_path: Path, opts: dict[str, Any], msg: str) -> None:
    with pytest.raises(ConfigError, match=msg):
        load_dataset("mnist1d", tmp_path, **opts)


def test_missing_package_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mnist1d", None)
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    with pytest.raises(DataError, match=r"want the optional extra: pip install \"fedsec\[mnist1d\]\""):
        load_dataset("mnist1d", tmp_path, **SMALL)
    assert not (tmp_path / "mnist1d").exists()


@pytest.mark.slow
def test_the_cnn_beats_logistic_regression(tmp_path: Path) -> None:
    """The reason for the dataset: it separates models (the package's paper: logistic regression about
    32 %, a small CNN above 90 %). 300 full-batch Adam steps on 2,000 signals each."""
    from fedsec.models import make_model

    train, test = load_dataset("mnist1d", tmp_path, n_train=2000, n_test=500)
    acc = {}
    for name in ("logreg", "cnn1d"):
        torch.manual_seed(0)
        m = make_model(name, train.input_shape, 10)
        opt = torch.optim.Adam(m.parameters(), lr=0.01)
        for _ in range(300):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(m(train.x), train.y).backward()
            opt.step()
        with torch.no_grad():
            acc[name] = float((m(test.x).argmax(1) == test.y).float().mean())
    assert acc["logreg"] < 0.5 and acc["cnn1d"] > acc["logreg"] + 0.3, acc
