"""DP-FedAvg, adaptive clipping and local noise."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _dp_stats import assert_gaussian_std
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dp import (
    Accountant,
    AdaptiveClipping,
    BudgetExceededError,
    DPFedAvg,
    LocalNoise,
    PrivacyConfigError,
    clip_rows,
    mean_rule,
)
from dp.central import adaptive_clip_update, update_noise_multiplier


def seeded(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


# ---- clipping ---------------------------------------------------------------------------------------

finite = st.floats(-1e6, 1e6, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 8)), elements=finite), st.floats(1e-3, 1e3)
)
def test_clip_rows_bounds_every_norm_and_keeps_small_rows(a: np.ndarray, clip: float) -> None:
    x = torch.from_numpy(a)
    out, norms = clip_rows(x, clip)
    out_norms = torch.linalg.vector_norm(out.double(), dim=1)
    assert bool((out_norms <= clip * (1 + 1e-5)).all())
    small = norms <= clip
    assert torch.equal(out[small], x[small])
    # clipping only rescales: same direction, non-negative factor
    big = ~small
    if big.any():
        cos = torch.nn.functional.cosine_similarity(out[big].double(), x[big].double(), dim=1)
        assert bool((cos > 1 - 1e-5).all())


def test_clip_rows_zeroes_non_finite_rows() -> None:
    x = torch.tensor([[3.0, 4.0], [math.inf, 0.0], [math.nan, 1.0]])
    out, norms = clip_rows(x, 1.0)
    assert torch.allclose(out[0], torch.tensor([0.6, 0.8]))
    assert torch.equal(out[1:], torch.zeros(2, 2))
    assert norms[1:].isinf().all()
    # a finite row whose float32 norm overflows is still clipped, not dropped
    huge = torch.tensor([[3e30, 4e30], [0.3, 0.4]])
    out, norms = clip_rows(huge, 1.0)
    assert torch.allclose(out, torch.tensor([[0.6, 0.8], [0.3, 0.4]]))
    assert math.isfinite(float(norms[0])) and float(norms[0]) == pytest.approx(5e30)


# ---- DP-FedAvg --------------------------------------------------------------------------------------


def test_zero_noise_mean_is_clipped_sum_over_expected_clients() -> None:
    x = torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, -10.0]])
    agg = DPFedAvg(mean_rule, clip=1.0, noise_multiplier=0.0, expected_clients=5)
    out = agg(x)
    expected = (torch.tensor([0.6, 0.8]) + torch.tensor([0.3, 0.4]) + torch.tensor([0.0, -1.0])) / 5
    assert torch.allclose(out, expected)
    assert agg.last_clip == 1.0


def test_noise_is_additive_and_independent_of_data() -> None:
    a, b = torch.randn(6, 50) * 3, torch.randn(6, 50)
    outs = []
    for x in (a, b):
        noisy = DPFedAvg(mean_rule, clip=1.0, noise_multiplier=1.3, expected_clients=4, generator=seeded(7))(
            x
        )
        clean = DPFedAvg(mean_rule, clip=1.0, noise_multiplier=0.0, expected_clients=4)(x)
        outs.append((noisy - clean) * 4)
    assert torch.allclose(outs[0], outs[1], atol=1e-5)
    assert not torch.allclose(outs[0], torch.zeros(50))


def test_central_noise_has_configured_std() -> None:
    # out = (sum clipped + N(0, (zC)^2)) / m with a zero stack: out * m ~ N(0, (zC)^2).
    z, clip, m, d = 1.7, 0.5, 8, 40_000
    agg = DPFedAvg(mean_rule, clip=clip, noise_multiplier=z, expected_clients=m)
    out = agg(torch.zeros(3, d))
    assert_gaussian_std(out * m, z * clip)


def test_wrong_std_is_detected() -> None:
    # The statistical check itself can fail: noise 5% too large is rejected.
    g = seeded(0)
    with pytest.raises(AssertionError, match="std is off"):
        assert_gaussian_std(torch.randn(40_000, generator=g) * 1.05, 1.0)


def test_default_generator_is_not_a_fixed_seed() -> None:
    x = torch.zeros(2, 64)
    outs = []
    for _ in range(2):
        torch.manual_seed(0)  # a global seed must not make the noise repeat
        outs.append(DPFedAvg(mean_rule, clip=1.0, noise_multiplier=1.0, expected_clients=2)(x))
    assert not torch.equal(outs[0], outs[1])


def test_seeded_generator_reproduces() -> None:
    x = torch.randn(4, 16)
    a = DPFedAvg(mean_rule, clip=1.0, noise_multiplier=1.0, expected_clients=4, generator=seeded(3))(x)
    b = DPFedAvg(mean_rule, clip=1.0, noise_multiplier=1.0, expected_clients=4, generator=seeded(3))(x)
    assert torch.equal(a, b)


class MedianWithSelection:
    name = "median"

    def __call__(self, stack: torch.Tensor) -> torch.Tensor:
        self.last_selection = [0, 1]
        return stack.median(dim=0).values


def test_robust_rule_sees_clipped_rows_and_passes_selection_through() -> None:
    seen: list[torch.Tensor] = []

    def rule(stack: torch.Tensor) -> torch.Tensor:
        seen.append(stack.clone())
        return stack[0]

    x = torch.tensor([[30.0, 40.0], [1.0, 0.0]])
    out = DPFedAvg(rule, clip=2.0, noise_multiplier=0.0, expected_clients=2)(x)
    assert torch.allclose(seen[0][0], torch.tensor([1.2, 1.6]))
    # n * rule(c) / m with n = m = 2
    assert torch.allclose(out, torch.tensor([1.2, 1.6]))
    med = MedianWithSelection()
    agg = DPFedAvg(med, clip=1.0, noise_multiplier=1.0, expected_clients=3)
    agg(torch.randn(3, 5))
    assert agg.last_selection == [0, 1]
    assert agg.privacy_statement(1e-5)["guarantee"] == "heuristic"


def test_privacy_statement_matches_accountant_per_round() -> None:
    agg = DPFedAvg(mean_rule, clip=1.0, noise_multiplier=1.2, expected_clients=120, population=3383)
    for _ in range(3):
        agg(torch.randn(120, 4))
    s = agg.privacy_statement(1e-5)
    assert s["guarantee"] == "proven" and s["level"] == "user" and s["accountant"] == "rdp"
    assert "120 of 3383" in s["sampling"]
    assert agg.accountant.history == [(1.2, 120 / 3383, 3)]
    assert s["epsilon"] == pytest.approx(agg.accountant.epsilon(1e-5))
    assert agg.would_exceed(s["epsilon"], 1e-5) and not agg.would_exceed(100.0, 1e-5)
    agg.reset()
    assert agg.privacy_statement(1e-5)["epsilon"] == 0.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"clip": 0.0}, "got clip=0.0; want"),
        ({"noise_multiplier": -0.1}, "got noise_multiplier=-0.1; want"),
        ({"expected_clients": 0}, "got expected_clients=0; want"),
        ({"population": 2}, "got population=2 < expected_clients=4"),
    ],
)
def test_dpfedavg_bad_config(kwargs: dict[str, float], match: str) -> None:
    base: dict[str, float] = {"clip": 1.0, "noise_multiplier": 1.0, "expected_clients": 4}
    with pytest.raises(PrivacyConfigError, match=match):
        DPFedAvg(mean_rule, **{**base, **kwargs})  # type: ignore[arg-type]


def test_bad_stack_shape() -> None:
    with pytest.raises(PrivacyConfigError, match=r"stack must be 2-D \(n, d\); got shape \(5,\)"):
        DPFedAvg(mean_rule, clip=1.0, noise_multiplier=1.0, expected_clients=4)(torch.zeros(5))


# ---- adaptive clipping ------------------------------------------------------------------------------


def test_adaptive_known_answers() -> None:
    assert adaptive_clip_update(1.0, 1.0, 0.5, 0.2) == pytest.approx(math.exp(-0.1))
    assert adaptive_clip_update(2.0, 0.0, 0.5, 0.2) == pytest.approx(2 * math.exp(0.1))
    # z^-2 = z_u^-2 + (2 sigma_b)^-2 with z = 1, sigma_b = 1: z_u = (1 - 1/4)^-1/2
    assert update_noise_multiplier(1.0, 1.0) == pytest.approx(0.75**-0.5)
    assert update_noise_multiplier(0.0, 0.0) == 0.0
    with pytest.raises(PrivacyConfigError, match="want count_noise_std > noise_multiplier / 2"):
        update_noise_multiplier(1.0, 0.5)


def test_adaptive_clip_tracks_the_target_quantile() -> None:
    # norms 1..100: the median norm is ~50; without noise the clip must move from 0.1 toward it.
    norms = torch.arange(1, 101, dtype=torch.float32)
    x = torch.zeros(100, 2)
    x[:, 0] = norms
    ac = AdaptiveClipping(target_quantile=0.5, lr=0.2, initial_clip=0.1, count_noise_std=0.0)
    agg = DPFedAvg(mean_rule, clip=1.0, noise_multiplier=0.0, expected_clients=100, adaptive=ac)
    assert agg.clip == 0.1
    for _ in range(200):
        agg(x)
    assert 40 <= agg.clip <= 60
    agg.reset()
    assert agg.clip == 0.1


def test_adaptive_default_count_noise_and_update_multiplier() -> None:
    agg = DPFedAvg(
        mean_rule, clip=1.0, noise_multiplier=1.0, expected_clients=100, adaptive=AdaptiveClipping()
    )
    assert agg.count_noise_std == 5.0  # m / 20
    assert agg.update_noise_multiplier == pytest.approx((1 - 1 / 100) ** -0.5)
    agg(torch.randn(100, 3))
    assert agg.accountant.history == [(1.0, 1.0, 1)]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target_quantile": 1.5}, "got target_quantile=1.5"),
        ({"lr": 0.0}, "got lr=0.0"),
        ({"initial_clip": -1.0}, "got initial_clip=-1.0"),
        ({"count_noise_std": -1.0}, "got count_noise_std=-1.0"),
    ],
)
def test_adaptive_bad_config(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(PrivacyConfigError, match=match):
        AdaptiveClipping(**kwargs)


# ---- local noise ------------------------------------------------------------------------------------


def test_local_noise_clips_each_row_and_has_configured_std() -> None:
    big = torch.full((4, 10_000), 5.0)
    clean = LocalNoise(clip=2.0, noise_multiplier=0.0)(big)
    assert torch.allclose(torch.linalg.vector_norm(clean, dim=1), torch.full((4,), 2.0))
    noisy = LocalNoise(clip=2.0, noise_multiplier=0.8)(big)
    assert noisy.shape == big.shape
    assert_gaussian_std(noisy - clean, 0.8 * 2.0)


def test_local_noise_statement_uses_replace_one_sensitivity() -> None:
    ln = LocalNoise(clip=1.0, noise_multiplier=4.0)
    ln(torch.zeros(3, 2))
    ln(torch.zeros(3, 2))
    s = ln.privacy_statement(1e-5)
    assert ln.accountant.history == [(2.0, 1.0, 2)]
    assert s["order"] == "local_noise_rule" and s["level"] == "user"
    assert 0 < s["epsilon"] < math.inf


@settings(max_examples=40, deadline=None)
@given(
    arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 6)), elements=finite),
    st.randoms(use_true_random=False),
)
def test_noiseless_mean_is_permutation_invariant_and_bounded(a: np.ndarray, rnd: object) -> None:
    x = torch.from_numpy(a)
    perm = list(range(x.shape[0]))
    rnd.shuffle(perm)  # type: ignore[attr-defined]
    agg = DPFedAvg(mean_rule, clip=0.5, noise_multiplier=0.0, expected_clients=3)
    out, out_perm = agg(x), agg(x[perm])
    assert torch.allclose(out, out_perm, atol=1e-6)
    assert float(out.norm()) <= 0.5 * x.shape[0] / 3 * (1 + 1e-5)


def test_budget_stops_before_spending_more() -> None:
    acc = Accountant()
    acc.step(1.0, 0.1, steps=3)
    budget = (acc.epsilon(1e-5) + 1e-9, 1e-5)  # exactly three rounds fit
    agg = DPFedAvg(
        mean_rule, clip=1.0, noise_multiplier=1.0, expected_clients=10, population=100, budget=budget
    )
    for _ in range(3):
        agg(torch.randn(10, 4))
    with pytest.raises(BudgetExceededError, match="want <= budget"):
        agg(torch.randn(10, 4))
    assert agg.rounds == 3 and agg.accountant.history == [(1.0, 0.1, 3)]
    with pytest.raises(PrivacyConfigError, match="got budget="):
        DPFedAvg(mean_rule, clip=1.0, noise_multiplier=1.0, expected_clients=1, budget=(0.0, 1e-5))
