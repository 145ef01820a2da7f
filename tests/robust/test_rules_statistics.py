"""Every rule that declares a statistic maps it to the aggregate the rule computes in the clear.

The weights path (:func:`robust.statistics.weights`) and the rule's ``__call__`` share the selection
functions of :mod:`robust.selection`; these tests check that the shared path gives the same output,
on random stacks (Hypothesis draws the shape and the seed) and on the pipelines whose linear maps
carry the statistic.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import robust
from robust.statistics import Statistic, apply_weights, carried_distances, compute, label, needs, weights

F = 1

RULES: dict[str, Callable[[], Any]] = {
    "mean": robust.Mean,
    "krum": lambda: robust.Krum(f=F),
    "multi_krum": lambda: robust.MultiKrum(f=F),
    "multi_krum_m2": lambda: robust.MultiKrum(f=F, m=2),
    "median": robust.Median,
    "trimmed_mean": lambda: robust.TrimmedMean(f=F),
    "mean(clip)": lambda: robust.Pipeline(pre=[robust.Clip(c=1.0)], rule=robust.Mean()),
    "mean(arc)": lambda: robust.Pipeline(pre=[robust.ARC(f=F)], rule=robust.Mean()),
    "mean(nnm)": lambda: robust.Pipeline(pre=[robust.NNM(f=F)], rule=robust.Mean()),
    "multi_krum(nnm)": lambda: robust.Pipeline(pre=[robust.NNM(f=F)], rule=robust.MultiKrum(f=F)),
    "mean(bucketing)": lambda: robust.Pipeline(pre=[robust.Bucketing(s=2, seed=3)], rule=robust.Mean()),
    "krum(bucketing)": lambda: robust.Pipeline(pre=[robust.Bucketing(s=2, seed=3)], rule=robust.Krum(f=0)),
}


def one_statistic(rule: Any) -> Statistic:
    kinds = needs(rule) - {Statistic.LINEAR}
    return next(iter(kinds)) if kinds else Statistic.LINEAR


@pytest.mark.parametrize("name", sorted(RULES))
@settings(max_examples=25, deadline=None)
@given(n=st.integers(7, 12), d=st.integers(1, 9), seed=st.integers(0, 2**31 - 1))
def test_weights_from_the_statistic_give_the_rule(name: str, n: int, d: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    x[0] += 6.0  # an outlier, so that selections and clipping do something
    rule = RULES[name]()
    twin = copy.deepcopy(rule)  # the same seeded permutation for bucketing
    stat = compute(one_statistic(rule), x) if one_statistic(rule) is not Statistic.LINEAR else None
    w = weights(twin, stat, n)
    # rtol 1e-6: the coordinate rules' selection weights are float32 (robust.selection).
    torch.testing.assert_close(apply_weights(x, w), rule(x), rtol=1e-6, atol=1e-9)


def test_declared_statistics() -> None:
    assert needs(robust.Mean()) == {Statistic.LINEAR}
    assert needs(robust.MultiKrum(f=1)) == {Statistic.DISTANCES}
    assert needs(robust.TrimmedMean(f=1)) == {Statistic.RANKS}
    assert needs(robust.CenteredClipping()) == {Statistic.NORMS}
    assert needs(robust.Pipeline(pre=[robust.Clip(c=1.0)], rule=robust.Mean())) == {
        Statistic.NORMS,
        Statistic.LINEAR,
    }
    # Rules that declare nothing need the raw rows (the safe default).
    for rule in (robust.GeometricMedian(), robust.Bulyan(f=1), robust.DnC(f=1), robust.SignMajority()):
        assert needs(rule) == {Statistic.RAW}


def test_labels_name_the_pipeline() -> None:
    assert label(robust.MultiKrum(f=1)) == "multi_krum"
    assert label(robust.Pipeline(pre=[robust.NNM(f=1)], rule=robust.TrimmedMean(f=1))) == "trimmed_mean(nnm)"


@pytest.mark.parametrize(
    "rule",
    [
        robust.GeometricMedian(),
        robust.Pipeline(pre=[robust.NNM(f=1)], rule=robust.TrimmedMean(f=1)),
        robust.Pipeline(pre=[robust.NNM(f=1), robust.Clip(c=1.0)], rule=robust.Mean()),
    ],
    ids=label,
)
def test_statistics_that_cannot_be_carried_are_refused(rule: Any) -> None:
    with pytest.raises(ValueError, match=r"got .*want"):
        weights(rule, torch.zeros(7, 7, dtype=torch.float64), 7)


def test_carried_distances_equal_distances_of_the_mixed_rows() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 4, generator=g, dtype=torch.float64)
    a = torch.rand(3, 6, generator=g, dtype=torch.float64)
    a = a / a.sum(dim=1, keepdim=True)  # an averaging map, as NNM's and bucketing's
    dist = robust.pairwise_sq_distances(x)
    torch.testing.assert_close(carried_distances(dist, a), robust.pairwise_sq_distances(a @ x))
    # A map that scales rows differently (clipping) moves distances in a way D cannot tell.
    with pytest.raises(ValueError, match="row sums differ"):
        carried_distances(dist, torch.diag(torch.linspace(0.5, 1.0, 6, dtype=torch.float64)))
