"""Why a robust rule under DP-FedAvg is labelled ``heuristic``: the attacker (a neighbouring dataset,
one client added or removed) moves ``n * rule(clipped)`` by more than C, the sensitivity the noise is
calibrated to; the mean's clipped sum never does. Brute force over small neighbouring datasets."""

from __future__ import annotations

import itertools

import pytest
import torch

import robust
from dp import DPFedAvg, clip_rows, mean_rule

C = 1.0


def released_sum(rule: object, stack: torch.Tensor) -> torch.Tensor:
    """What DP-FedAvg noises: ``n * rule(clip(stack))``."""
    clipped, _ = clip_rows(stack, C)
    return stack.shape[0] * rule(clipped)  # type: ignore[operator]


def max_add_remove_change(rule: object, n: int) -> float:
    """Largest ||n * rule(D) - (n - 1) * rule(D minus one row)|| over D in {-C, 0, C}^n (1-D updates)."""
    worst = 0.0
    for values in itertools.product((-C, 0.0, C), repeat=n):
        d = torch.tensor(values, dtype=torch.float64)[:, None]
        full = released_sum(rule, d)
        for i in range(n):
            rest = torch.cat([d[:i], d[i + 1 :]])
            worst = max(worst, float(torch.linalg.vector_norm(full - released_sum(rule, rest))))
    return worst


def test_mean_clipped_sum_has_sensitivity_c() -> None:
    assert max_add_remove_change(mean_rule, 5) == pytest.approx(C)


@pytest.mark.parametrize(("name", "kwargs", "n"), [("median", {}, 4), ("trimmed_mean", {"f": 1}, 4)])
def test_robust_rule_release_exceeds_c(name: str, kwargs: dict[str, int], n: int) -> None:
    rule = robust.make(name, **kwargs)
    worst = max_add_remove_change(rule, n)
    assert worst > 2 * C  # the noise is calibrated to C: the mean's epsilon is not this rule's
    assert DPFedAvg(rule, clip=C, noise_multiplier=1.0, expected_clients=n).guarantee == "heuristic"


def test_median_witness() -> None:
    # D = (-C, C, C): 3 * median = 3C; remove one C: 2 * median(-C, C) = 0. The release moves by 3C.
    rule = robust.make("median")
    d = torch.tensor([[-C], [C], [C]], dtype=torch.float64)
    assert float(released_sum(rule, d)) == pytest.approx(3 * C)
    assert float(released_sum(rule, d[:2])) == pytest.approx(0.0)
