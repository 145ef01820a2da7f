"""Comparator networks behind the column-wise order statistics."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robust._network import apply_network, batcher_network, prune_network


@pytest.mark.parametrize("n", range(1, 13))
def test_sorts_every_zero_one_input(n: int) -> None:
    """0-1 principle (Knuth, TAOCP 5.3.4): a network sorts everything iff it sorts all 2^n 0/1 inputs."""
    cols = np.array(list(itertools.product([0.0, 1.0], repeat=n))).T  # (n, 2^n): every input a column
    rows = apply_network(cols, batcher_network(n))
    np.testing.assert_array_equal(np.stack(rows), np.sort(cols, axis=0))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 70), st.integers(0, 2**32 - 1), st.data())
def test_pruned_network_gives_exact_ranks(n: int, seed: int, data: st.DataObject) -> None:
    x = np.random.default_rng(seed).normal(size=(n, 16))
    x[:, 0] = 1.0  # ties
    ranks = data.draw(st.sets(st.integers(0, n - 1), min_size=1, max_size=3))
    rows = apply_network(x, prune_network(n, ranks))
    s = np.sort(x, axis=0)
    for r in ranks:
        np.testing.assert_array_equal(rows[r], s[r])
    assert len(prune_network(n, ranks)) <= len(batcher_network(n))


def test_median_network_is_pruned_and_input_untouched() -> None:
    assert len(prune_network(25, [12])) < len(batcher_network(25)) == 140
    x = np.arange(10.0)[::-1].reshape(5, 2).copy()
    before = x.copy()
    apply_network(x, batcher_network(5))
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize(("n", "outputs"), [(0, [0]), (5, []), (5, [5]), (5, [-1])])
def test_bad_arguments(n: int, outputs: list[int]) -> None:
    with pytest.raises(ValueError, match="must be"):
        prune_network(n, outputs) if n else batcher_network(n)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 20), st.data(), st.integers(0, 2**32 - 1))
def test_bulyan_window_is_the_beta_nearest_to_the_median(theta: int, data: st.DataObject, seed: int) -> None:
    """The crossing-point window search returns the mean of the beta values nearest to the median."""
    from robust.distance import _nearest_window_mean

    beta = data.draw(st.integers(1, theta))
    rng = np.random.default_rng(seed)
    s = np.sort(rng.normal(size=(theta, 9)) * rng.choice([1.0, 1e6], size=(theta, 9)), axis=0)
    m = np.median(s, axis=0)
    expected = [np.mean(sorted(s[:, j], key=lambda v: abs(v - m[j]))[:beta]) for j in range(9)]
    np.testing.assert_allclose(_nearest_window_mean(s, m, beta), expected, rtol=1e-12)
