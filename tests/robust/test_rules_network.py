"""Comparator networks behind the column-wise order statistics."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robust._network import apply_network, select_network, sorting_network


@pytest.mark.parametrize("n", range(1, 17))
def test_sorts_every_zero_one_input(n: int) -> None:
    """0-1 principle (Knuth, TAOCP 5.3.4): a network sorts everything iff it sorts all 2^n 0/1 inputs."""
    cols = np.array(list(itertools.product([0.0, 1.0], repeat=n))).T  # (n, 2^n): every input a column
    rows = apply_network(cols, select_network(n, range(n)))
    np.testing.assert_array_equal(np.stack(rows), np.sort(cols, axis=0))
    assert len(select_network(n, range(n)).comparators) == len(sorting_network(n))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 70), st.integers(0, 2**32 - 1), st.data())
def test_selected_network_gives_exact_ranks_and_bag(n: int, seed: int, data: st.DataObject) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 16))
    x[:, 0] = 1.0  # ties
    x[:, 1] = rng.integers(0, 3, size=n)  # many ties
    ranks = data.draw(st.sets(st.integers(0, n - 1), max_size=3))
    bag = data.draw(st.sets(st.integers(0, n - 1).filter(lambda r: r not in ranks), max_size=n))
    if not ranks and not bag:
        bag = {0}
    net = select_network(n, ranks, bag)
    rows = apply_network(x, net)
    s = np.sort(x, axis=0)
    assert len(rows) == len(ranks) + len(bag)
    for r, row in zip(sorted(ranks), rows):
        np.testing.assert_array_equal(row, s[r])
    got_bag = np.sort(np.stack(rows[len(ranks) :]), axis=0) if bag else np.empty((0, 16))
    np.testing.assert_array_equal(got_bag, s[sorted(bag)])
    assert net.calls <= 2 * len(sorting_network(n))


def test_pruning_saves_calls_and_input_is_untouched() -> None:
    full = 2 * len(sorting_network(25))
    assert full == 276
    assert select_network(25, [12]).calls == 184  # the median: half comparators
    assert select_network(25, range(5, 20)).calls == 252  # middle 15, each exactly
    assert select_network(25, bag=range(5, 20)).calls == 218  # middle 15 as a multiset
    x = np.arange(10.0)[::-1].reshape(5, 2).copy()
    before = x.copy()
    for net in (select_network(5, range(5)), select_network(5, [2]), select_network(5, bag=[1, 2, 3])):
        apply_network(x, net)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize(
    ("n", "ranks", "bag"), [(0, [0], []), (5, [], []), (5, [5], []), (5, [-1], []), (5, [1], [1, 2])]
)
def test_bad_arguments(n: int, ranks: list[int], bag: list[int]) -> None:
    with pytest.raises(ValueError, match="must be"):
        select_network(n, ranks, bag)


def test_block_of_the_wrong_height_is_refused() -> None:
    with pytest.raises(ValueError, match="must have 5 rows"):
        apply_network(np.zeros((4, 3)), select_network(5, [2]))


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 20), st.data(), st.integers(0, 2**32 - 1), st.booleans())
def test_bulyan_window_is_the_beta_nearest_to_the_median(
    theta: int, data: st.DataObject, seed: int, ties: bool
) -> None:
    """The pair-pick window returns the mean of the beta values nearest to the median (ties: lower
    rank first, as a stable sort by distance), reading only the ranks of _window_ranks."""
    from robust.distance import _nearest_window_mean, _window_ranks

    beta = data.draw(st.integers(1, theta))
    rng = np.random.default_rng(seed)
    if ties:  # few distinct values: equal distances on both sides of the median
        s = np.sort(rng.integers(-3, 4, size=(theta, 9)).astype(np.float64), axis=0)
    else:
        s = np.sort(rng.normal(size=(theta, 9)) * rng.choice([1.0, 1e6], size=(theta, 9)), axis=0)
    m = np.median(s, axis=0)
    expected = [np.mean(sorted(s[:, j], key=lambda v: abs(v - m[j]))[:beta]) for j in range(9)]
    window = {r: s[r] for r in _window_ranks(theta, beta)}
    got = _nearest_window_mean(window, theta, beta)
    # Sums in another order than the reference: equal up to rounding of the largest summand.
    np.testing.assert_array_less(np.abs(got - expected), 1e-12 * np.abs(s).max(axis=0) + 1e-300)
