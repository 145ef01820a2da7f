"""Known answers for the closed-form attacks (ALIE, IPM, sign flip, scaling, Gaussian, faults, Mimic)."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import norm

from robust import attacks as A


def _ctx(n: int, f: int, seed: int | None = None) -> A.AttackContext:
    g = None if seed is None else torch.Generator().manual_seed(seed)
    return A.AttackContext(n=n, f=f, generator=g)


# --- ALIE --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "f", "quantile"),
    [
        # s = floor(n/2 + 1) - f; z_max = Phi^-1((n - f - s) / (n - f)), worked by hand:
        (25, 5, 12 / 20),  # s = 13 - 5 = 8
        (50, 10, 24 / 40),  # s = 26 - 10 = 16
        (100, 20, 49 / 80),  # s = 51 - 20 = 31
        (10, 2, 4 / 8),  # s = 6 - 2 = 4 -> z_max = 0
        (17, 3, 8 / 14),  # s = floor(9.5) - 3 = 6
        (25, 0, 12 / 25),  # s = 13 -> negative z_max
    ],
)
def test_alie_z_max_known_answers(n: int, f: int, quantile: float) -> None:
    assert A.alie_z_max(n, f) == pytest.approx(norm.ppf(quantile), abs=1e-12)


def test_alie_z_max_literal_values() -> None:
    # Phi^-1(0.6) and Phi^-1(0.6125); checked by Phi(x) = (1 + erf(x / sqrt 2)) / 2 below
    assert A.alie_z_max(25, 5) == pytest.approx(0.2533471031357997, abs=1e-12)
    assert A.alie_z_max(50, 10) == pytest.approx(0.2533471031357997, abs=1e-12)
    assert A.alie_z_max(100, 20) == pytest.approx(0.2858408748811657, abs=1e-12)
    assert A.alie_z_max(10, 2) == pytest.approx(0.0, abs=1e-15)
    for (n, f), q in {(25, 5): 0.6, (100, 20): 0.6125}.items():
        assert (1 + math.erf(A.alie_z_max(n, f) / math.sqrt(2))) / 2 == pytest.approx(q, abs=1e-12)


@pytest.mark.parametrize(("n", "f"), [(10, 6), (10, 9), (2, 0), (1, 0), (5, 5), (5, -1)])
def test_alie_z_max_outside_its_domain_raises(n: int, f: int) -> None:
    with pytest.raises(ValueError, match=f"got n={n}, f={f}"):
        A.alie_z_max(n, f)


def test_alie_exact_rows() -> None:
    own = torch.tensor([[0.0, 0.0, 5.0], [1.0, 2.0, 5.0], [2.0, 4.0, 5.0]])
    # mean (1, 2, 5), Bessel std (1, 2, 0)
    out = A.ALIE(z=2.0)(own, ctx=_ctx(10, 3))
    torch.testing.assert_close(out, torch.tensor([[-1.0, -2.0, 5.0]] * 3))


def test_alie_default_z_is_z_max() -> None:
    g = torch.Generator().manual_seed(0)
    own = torch.randn(5, 40, generator=g)
    z = A.alie_z_max(25, 5)
    expected = own.mean(0) - z * own.std(0)
    out = A.ALIE()(own, ctx=_ctx(25, 5))
    torch.testing.assert_close(out, expected.expand(5, -1))


def test_alie_omniscient_uses_honest_statistics() -> None:
    g = torch.Generator().manual_seed(1)
    own, honest = torch.randn(3, 20, generator=g), torch.randn(7, 20, generator=g) * 3 + 1
    out = A.ALIE(z=1.5, omniscient=True)(own, honest, ctx=_ctx(10, 3))
    torch.testing.assert_close(out[0], honest.mean(0) - 1.5 * honest.std(0))


def test_alie_single_byzantine_sends_its_gradient() -> None:
    own = torch.tensor([[1.0, -2.0]])
    out = A.ALIE(z=5.0)(own, ctx=_ctx(4, 1))
    torch.testing.assert_close(out, own)
    assert torch.isfinite(out).all()


# --- IPM, sign flip, scaling ------------------------------------------------------------------------


def test_ipm_exact_rows() -> None:
    own = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    out = A.IPM(eps=0.5)(own, ctx=_ctx(6, 2))
    torch.testing.assert_close(out, torch.tensor([[-1.0, -1.5], [-1.0, -1.5]]))


def test_ipm_default_eps_and_zero_eps() -> None:
    own = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    torch.testing.assert_close(A.IPM()(own, ctx=_ctx(6, 2))[0], torch.tensor([-0.2, -0.3]))
    torch.testing.assert_close(A.IPM(eps=0.0)(own, ctx=_ctx(6, 2)), torch.zeros(2, 2))


def test_sign_flip_exact_rows() -> None:
    own = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -4.0]])
    out = A.SignFlip()(own, ctx=_ctx(5, 2))
    assert torch.equal(out, torch.tensor([[-1.0, 2.0, -0.5], [-0.0, -3.0, 4.0]]))


def test_none_returns_own_unchanged_as_a_copy() -> None:
    own = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    out = A.NoAttack()(own, ctx=_ctx(5, 2))
    assert torch.equal(out, own) and out.data_ptr() != own.data_ptr()


def test_scaling_default_factor_is_n_over_f() -> None:
    own = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    torch.testing.assert_close(A.Scaling()(own, ctx=_ctx(10, 2)), own * 5.0)
    torch.testing.assert_close(A.Scaling(factor=3.0)(own, ctx=_ctx(10, 2)), own * 3.0)


def test_scaling_default_replaces_the_mean() -> None:
    # f attackers scaled by n/f: mean = own mean + honest sum / n; with honest updates summing to 0 the
    # average is replaced by the attackers' mean update (model replacement).
    g = torch.Generator().manual_seed(3)
    own = torch.randn(2, 6, generator=g)
    honest = torch.randn(8, 6, generator=g)
    honest = honest - honest.mean(0)
    byz = A.Scaling()(own, ctx=_ctx(10, 2))
    torch.testing.assert_close(torch.cat([honest, byz]).mean(0), own.mean(0))


# --- Gaussian ---------------------------------------------------------------------------------------


def test_gaussian_is_reproducible_and_has_the_requested_spread() -> None:
    own = torch.zeros(3, 20_000)
    a = A.Gaussian(sigma=2.5)(own, ctx=_ctx(10, 3, seed=5))
    b = A.Gaussian(sigma=2.5)(own, ctx=_ctx(10, 3, seed=5))
    c = A.Gaussian(sigma=2.5)(own, ctx=_ctx(10, 3, seed=6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])  # rows are independent draws
    # 60,000 samples: std error of the std is about 2.5 / sqrt(120000) ~ 0.007
    assert float(a.std()) == pytest.approx(2.5, abs=0.05)
    assert abs(float(a.mean())) < 0.05


def test_gaussian_ignores_own_values() -> None:
    own = torch.full((2, 100), 1e3)
    out = A.Gaussian(sigma=1.0)(own, ctx=_ctx(5, 2, seed=0))
    assert float(out.abs().max()) < 10.0


# --- faults ----------------------------------------------------------------------------------------


def test_large_norm_rows_have_the_norm_and_reversed_direction() -> None:
    own = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0]])
    out = A.LargeNorm(norm=1e6)(own, ctx=_ctx(5, 2))
    torch.testing.assert_close(out[0], torch.tensor([-0.6e6, -0.8e6, 0.0]))
    torch.testing.assert_close(out[1], torch.full((3,), -1e6 / math.sqrt(3)))
    torch.testing.assert_close(out.norm(dim=1), torch.full((2,), 1e6))


def test_large_norm_default_stays_finite_in_float32() -> None:
    own = torch.randn(2, 1000)
    out = A.LargeNorm()(own, ctx=_ctx(5, 2))
    assert torch.isfinite(out).all() and torch.isfinite((out * out).sum(1)).all()
    assert float(out.norm(dim=1).min()) == pytest.approx(1e12, rel=1e-5)


@pytest.mark.parametrize(
    ("kind", "check"), [("nan", torch.isnan), ("inf", torch.isposinf), ("-inf", torch.isneginf)]
)
def test_non_finite_full_and_partial(kind: str, check: object) -> None:
    own = torch.randn(2, 5)
    full = A.NonFinite(kind=kind)(own, ctx=_ctx(5, 2))
    assert check(full).all()  # type: ignore[operator]
    part = A.NonFinite(kind=kind, partial=True)(own, ctx=_ctx(5, 2))
    assert check(part[:, 0]).all()  # type: ignore[operator]
    assert torch.equal(part[:, 1:], own[:, 1:])


# --- Mimic ------------------------------------------------------------------------------------------


def test_mimic_fixed_target_copies_that_client() -> None:
    own, honest = torch.zeros(2, 4), torch.arange(24.0).reshape(6, 4)
    atk = A.Mimic(target=4)
    out = atk(own, honest, ctx=_ctx(8, 2))
    assert torch.equal(out, honest[4].expand(2, -1)) and atk.last_target == 4


def test_mimic_target_out_of_range_raises() -> None:
    with pytest.raises(ValueError, match="got target=6"):
        A.Mimic(target=6)(torch.zeros(2, 4), torch.zeros(6, 4), ctx=_ctx(8, 2))


def test_mimic_heuristic_picks_the_extreme_client_on_the_main_axis() -> None:
    g = torch.Generator().manual_seed(0)
    t = torch.tensor([0.0, 1.0, 2.0, 3.0, 10.0, 1.5])
    honest = 5.0 + t[:, None] * torch.tensor([1.0, -1.0, 0.0, 0.0]) + 0.01 * torch.randn(6, 4, generator=g)
    atk = A.Mimic()
    out = atk(torch.zeros(2, 4), honest, ctx=_ctx(8, 2))
    assert atk.last_target == 4
    assert torch.equal(out, honest[4].expand(2, -1))


@pytest.mark.parametrize("seed", range(5))
def test_mimic_heuristic_matches_an_svd_reference(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    honest = torch.randn(9, 30, generator=g, dtype=torch.float64) * torch.linspace(
        0.1, 3, 30, dtype=torch.float64
    )
    centered = honest - honest.mean(0)
    v = torch.linalg.svd(centered, full_matrices=False).Vh[0]
    expected = int((centered @ v).abs().argmax())
    assert A.mimic_target(honest) == expected
