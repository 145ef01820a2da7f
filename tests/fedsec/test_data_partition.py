"""Client partitions: disjoint and covering, minimum sizes, skew that follows beta, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fedsec.data import PARTITION_SCHEMES, label_histogram, label_skew, partition
from fedsec.errors import ConfigError


def _labels(n: int, classes: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, classes, n)


def _check_cover(parts: list[np.ndarray], n: int, n_clients: int, min_samples: int) -> None:
    assert len(parts) == n_clients
    allidx = np.concatenate(parts)
    assert allidx.dtype == np.int64
    assert len(allidx) == n and np.array_equal(np.sort(allidx), np.arange(n)), "not a disjoint cover"
    assert min(len(p) for p in parts) >= min_samples
    assert all(np.all(np.diff(p) > 0) for p in parts), "parts are sorted, no repeats"


@settings(max_examples=60, deadline=None)
@given(
    scheme=st.sampled_from(PARTITION_SCHEMES),
    n_clients=st.integers(1, 30),
    extra=st.integers(0, 400),
    classes=st.integers(1, 10),
    beta=st.sampled_from([0.3, 1.0, 100.0]),
    spc=st.integers(1, 3),
    min_samples=st.integers(0, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_scheme_is_a_disjoint_cover(
    scheme: str, n_clients: int, extra: int, classes: int, beta: float, spc: int, min_samples: int, seed: int
) -> None:
    n = n_clients * max(spc, min_samples, 1) * 3 + extra
    y = _labels(n, classes, seed)
    try:
        parts = partition(
            y,
            n_clients,
            scheme,
            beta=beta,
            shards_per_client=spc,
            min_samples=min_samples,
            rng=np.random.default_rng(seed),
        )
    except ConfigError as e:
        # Dirichlet draws with one class and many clients rarely meet min_samples: a documented refusal
        assert scheme == "dirichlet" and "no draw in" in str(e)
        assume(False)
    _check_cover(parts, n, n_clients, min_samples)


@pytest.mark.parametrize("scheme", PARTITION_SCHEMES)
def test_same_seed_same_partition(scheme: str) -> None:
    y = _labels(500, 10, 0)
    a = partition(y, 10, scheme, rng=np.random.default_rng(3))
    b = partition(y, 10, scheme, rng=np.random.default_rng(3))
    c = partition(y, 10, scheme, rng=np.random.default_rng(4))
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert not all(np.array_equal(p, q) for p, q in zip(a, c))


def test_iid_sizes_differ_by_at_most_one_and_mix_labels() -> None:
    y = _labels(1003, 10, 1)
    parts = partition(y, 10, "iid", rng=np.random.default_rng(0))
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    assert label_skew(label_histogram(y, parts, 10)) < 0.15


def test_dirichlet_skew_decreases_with_beta() -> None:
    """Measured: mean TV distance to the global label mix over 10 seeds, 25 clients on 2,000 examples."""
    y = _labels(2000, 10, 2)
    skew = {}
    classes_per_client = {}
    for beta in (0.1, 0.5, 100.0):
        s, k = [], []
        for seed in range(10):
            parts = partition(y, 25, "dirichlet", beta=beta, rng=np.random.default_rng(seed))
            h = label_histogram(y, parts, 10)
            s.append(label_skew(h))
            k.append(float((h > 0).sum(axis=1).mean()))
        skew[beta], classes_per_client[beta] = np.mean(s), np.mean(k)
    assert skew[0.1] > skew[0.5] + 0.1 > skew[100.0] + 0.2
    assert skew[100.0] < 0.15
    assert classes_per_client[0.1] < 6 < classes_per_client[100.0]


def test_dirichlet_resamples_until_min_samples() -> None:
    y = _labels(300, 10, 3)
    # beta = 0.1 with 10 clients: about half of single draws leave a client with fewer than 5 examples
    rng = np.random.default_rng(0)
    starved = 0
    for _ in range(20):
        parts = partition(y, 10, "dirichlet", beta=0.1, min_samples=0, rng=rng)
        starved += min(len(p) for p in parts) < 5
    assert starved > 0, "the check below would be vacuous"
    for seed in range(5):
        parts = partition(y, 10, "dirichlet", beta=0.1, min_samples=5, rng=np.random.default_rng(seed))
        _check_cover(parts, 300, 10, 5)


def test_dirichlet_gives_up_with_a_clear_error() -> None:
    y = _labels(100, 10, 4)
    with pytest.raises(ConfigError, match=r"no draw in 7 tries.*min_samples=4.*beta=0.01"):
        partition(y, 25, "dirichlet", beta=0.01, min_samples=4, max_tries=7, rng=np.random.default_rng(0))


def test_shards_give_each_client_few_labels() -> None:
    y = np.repeat(np.arange(10), 100)  # 1,000 examples, 100 per class
    parts = partition(y, 20, "shards", shards_per_client=2, rng=np.random.default_rng(0))
    _check_cover(parts, 1000, 20, 2)
    assert [len(p) for p in parts] == [50] * 20
    h = label_histogram(y, parts, 10)
    assert (h > 0).sum(axis=1).max() <= 2
    assert label_skew(h) > 0.75


def test_shards_uneven_sizes_still_cover() -> None:
    y = _labels(101, 3, 5)
    parts = partition(y, 7, "shards", shards_per_client=3, rng=np.random.default_rng(1))
    _check_cover(parts, 101, 7, 2)


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        ({"n_clients": 30}, r"got 50 examples for n_clients=30 with min_samples=2; want at least 60"),
        ({"n_clients": 10, "min_samples": 6}, r"got 50 examples.*min_samples=6; want at least 60"),
        ({"n_clients": 0}, "n_clients: got 0"),
        (
            {"n_clients": 5, "scheme": "pathological"},
            "scheme: got 'pathological'; want one of: iid, dirichlet",
        ),
        ({"n_clients": 5, "beta": 0.0}, "beta: got 0.0"),
        ({"n_clients": 5, "beta": float("inf")}, "beta: got inf"),
        ({"n_clients": 5, "min_samples": -1}, "min_samples: got -1"),
        ({"n_clients": 5, "scheme": "shards", "shards_per_client": 0}, "shards_per_client: got 0"),
        ({"n_clients": 20, "scheme": "shards", "shards_per_client": 3}, r"50 examples for 60 shards"),
        (
            {"n_clients": 10, "scheme": "shards", "shards_per_client": 2, "min_samples": 5},
            r"2 shards of >= 2 examples.*min_samples=5",
        ),
        ({"n_clients": 2.0}, "n_clients: got 2.0"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], msg: str) -> None:
    y = _labels(50, 4, 6)
    with pytest.raises(ConfigError, match=msg):
        partition(y, rng=np.random.default_rng(0), **kwargs)  # type: ignore[arg-type]


def test_bad_labels() -> None:
    with pytest.raises(ConfigError, match="labels"):
        partition(np.array([0.5, 1.0, 2.0]), 1, "iid", rng=np.random.default_rng(0))
    with pytest.raises(ConfigError, match="labels"):
        partition(np.zeros((4, 2), dtype=np.int64), 1, "iid", rng=np.random.default_rng(0))


def test_label_histogram_known_answer() -> None:
    y = np.array([0, 1, 1, 2, 2, 2])
    h = label_histogram(y, [np.array([0, 3]), np.array([1, 2, 4, 5]), np.array([], dtype=np.int64)], 4)
    assert h.dtype == np.int64
    assert h.tolist() == [[1, 0, 1, 0], [0, 2, 2, 0], [0, 0, 0, 0]]
    with pytest.raises(ConfigError, match=r"labels in \[0, 2\]; want \[0, 2\)"):
        label_histogram(y, [np.arange(6)], 2)


def test_label_skew_known_answers() -> None:
    assert label_skew(np.array([[2, 2], [5, 5]])) == 0.0
    # global mix (1/2, 1/2); each client holds one class: TV distance 1/2 each
    assert label_skew(np.array([[3, 0], [0, 3]])) == pytest.approx(0.5)
    # global (3/4, 1/4): client 1 (1, 0) -> 1/4; client 2 (1/2, 1/2) -> 1/4; empty client skipped
    assert label_skew(np.array([[2, 0], [1, 1], [0, 0]])) == pytest.approx(0.25)
    with pytest.raises(ConfigError, match="label_skew"):
        label_skew(np.zeros((2, 2)))
