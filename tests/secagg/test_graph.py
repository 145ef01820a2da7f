"""Neighbour graphs and the SecAgg+ degree choice."""

from __future__ import annotations

import pytest

from secagg import SecAggError
from secagg.graph import _binom_cdf_below, choose_degree, neighbours


@pytest.mark.parametrize(("n", "k"), [(10, 2), (10, 4), (31, 8), (100, 20)])
def test_harary_graph_is_k_regular_and_symmetric(n: int, k: int) -> None:
    g = neighbours(n, k, b"s" * 16)
    assert all(len(nb) == k and i not in nb for i, nb in enumerate(g))
    assert all(i in g[j] for i, nb in enumerate(g) for j in nb)
    assert g == neighbours(n, k, b"s" * 16)
    assert g != neighbours(n, k, b"t" * 16)  # the relabelling depends on the session


def test_complete_graph_and_bad_degree() -> None:
    assert neighbours(4, None, bytes(16)) == ((1, 2, 3), (0, 2, 3), (0, 1, 3), (0, 1, 2))
    assert neighbours(4, 6, bytes(16)) == neighbours(4, None, bytes(16))
    with pytest.raises(SecAggError, match="even"):
        neighbours(10, 3, bytes(16))


def test_binomial_tail_known_answer() -> None:
    assert _binom_cdf_below(4, 0.5, 2) == pytest.approx(5 / 16)
    assert _binom_cdf_below(3, 0.0, 1) == 1.0


def test_choose_degree_meets_its_bounds_and_grows_like_log_n() -> None:
    ks = []
    for n in (100, 1000, 10_000):
        ch = choose_degree(n, dropout=0.1, corrupt=0.2, sigma=40, eta=30)
        assert not ch.complete
        assert n * _binom_cdf_below(ch.k, 0.9, ch.t) <= 2**-30
        assert n * (1 - _binom_cdf_below(ch.k + 1, 0.2, ch.t)) <= 2**-40
        # the degree just below fails one of the bounds for every t
        k = ch.k - 2
        assert all(
            n * _binom_cdf_below(k, 0.9, t) > 2**-30 or n * (1 - _binom_cdf_below(k + 1, 0.2, t)) > 2**-40
            for t in range(1, k + 2)
        )
        ks.append(ch.k)
    assert ks[2] - ks[0] < 0.5 * ks[0]  # 100x more clients, < 50% more neighbours
    assert choose_degree(25).complete
