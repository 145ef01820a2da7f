"""Cohort sampling: Poisson under DP-FedAvg (so amplification by sampling is a proven claim), uniform
fixed-size otherwise; empty Poisson cohorts still release the noise."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import fedsec.simulation as sim
from fedsec.cohorts import CohortSampler, draw_cohort, poisson_cohort, sampler_for
from fedsec.errors import ConfigError
from tests.fedsec.sim_helpers import tiny


def test_poisson_inclusion_is_independent_with_probability_q() -> None:
    rng = np.random.default_rng(7)
    n, q, trials = 40, 0.2, 4000
    hits = np.zeros(n)
    sizes = []
    for _ in range(trials):
        c = poisson_cohort(rng, n, q)
        hits[c] += 1
        sizes.append(len(c))
    # Each client's inclusion frequency is Binomial(trials, q)/trials: within 5 standard errors.
    se = np.sqrt(q * (1 - q) / trials)
    assert np.all(np.abs(hits / trials - q) < 5 * se)
    # The cohort size is Binomial(n, q): its variance n q (1 - q) = 6.4, not 0 as for a fixed size.
    assert np.var(sizes) == pytest.approx(n * q * (1 - q), rel=0.15)
    assert min(sizes) < n * q < max(sizes)


def test_fixed_and_full_cohorts() -> None:
    rng = np.random.default_rng(0)
    fixed = CohortSampler(population=10, cohort_size=4, poisson=False)
    assert {len(draw_cohort(fixed, rng)) for _ in range(50)} == {4}
    full = CohortSampler(population=10, cohort_size=10, poisson=True)
    assert draw_cohort(full, rng).tolist() == list(range(10))
    assert (fixed.kind, full.kind, CohortSampler(10, 4, True).kind) == ("fixed", "full", "poisson")


def test_bad_cohort_size_is_refused() -> None:
    with pytest.raises(ConfigError, match="got cohort_size=5, population=4"):
        CohortSampler(population=4, cohort_size=5, poisson=True)


DPFEDAVG = {"mode": "user", "order": "clip_rule_noise", "noise_multiplier": 1.0}


@pytest.mark.parametrize(
    ("dp", "defense", "poisson"),
    [
        (DPFEDAVG, {"rule": "mean"}, True),
        (DPFEDAVG, {"rule": "median"}, False),
        (DPFEDAVG, {"rule": "mean", "pre": ["nnm"]}, False),
        ({"mode": "user", "order": "local_noise_rule", "noise_multiplier": 1.0}, {"rule": "mean"}, False),
        ({"mode": "none"}, {"rule": "mean"}, False),
    ],
)
def test_sampler_for_uses_poisson_exactly_under_dp_fedavg_with_the_mean(
    dp: dict[str, Any], defense: dict[str, Any], poisson: bool
) -> None:
    cfg = tiny(train={"clients_per_round": 3}, dp=dp, defense=[defense])
    assert sampler_for(cfg).poisson is poisson


def _run_recording_cohorts(monkeypatch: pytest.MonkeyPatch, rule: str, **train: Any) -> tuple[Any, list[int]]:
    sizes: list[int] = []

    def recording(sampler: CohortSampler, rng: np.random.Generator) -> np.ndarray:
        c = draw_cohort(sampler, rng)
        sizes.append(len(c))
        return c

    monkeypatch.setattr(sim, "draw_cohort", recording)
    cfg = tiny(
        train={"rounds": 12, **train},
        dp={"mode": "user", "order": "clip_rule_noise", "noise_multiplier": 1.0, "clip": 1.0},
        defense=[{"rule": rule}],
    )
    return sim.simulate(cfg), sizes


def test_dp_fedavg_run_samples_by_poisson_and_survives_empty_cohorts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # q = 1/8: P(empty cohort) = (7/8)^8 = 0.34 per round, so 12 rounds see empty and larger cohorts.
    res, sizes = _run_recording_cohorts(monkeypatch, "mean", clients_per_round=1)
    assert 0 in sizes and max(sizes) > 1
    priv = res.summary["privacy"]
    assert priv["sampling"].startswith("Poisson, q=0.125")
    assert priv["guarantee"] == "proven"
    assert priv["rounds"] == 12  # every round is released and accounted, empty or not
    assert res.metrics[-1]["dp_guarantee"] == "proven"
    assert np.isfinite(res.final_accuracy)


def test_robust_rule_under_dp_fedavg_is_labelled_heuristic_everywhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Fixed-size cohorts (the rule's Byzantine bound needs a known n), and both caveats stated.
    res, sizes = _run_recording_cohorts(monkeypatch, "median", clients_per_round=4)
    assert set(sizes) == {4}
    priv = res.summary["privacy"]
    assert priv["guarantee"] == "heuristic"
    assert "not proven" in priv["sampling"] and "fixed-size cohort" in priv["note"]
    assert all(m["dp_guarantee"] == "heuristic" for m in res.metrics)


def test_budget_stop_on_a_heuristic_epsilon_says_so() -> None:
    cfg = tiny(
        train={"rounds": 50},
        dp={"mode": "user", "noise_multiplier": 1.0, "clip": 1.0, "budget_epsilon": 5.0},
        defense=[{"rule": "median"}],
    )
    res = sim.simulate(cfg)
    assert res.summary["stopped"].startswith("privacy budget")
    assert "heuristic epsilon, not proven" in res.summary["stopped"]
