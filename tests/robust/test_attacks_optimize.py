"""Min-Max / Min-Sum (NDSS 2021): the constraint holds at the returned lambda and fails at twice it."""

from __future__ import annotations

import functools
import math
import operator

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from robust import attacks as A

N = 12


def _stack(seed: int, m: int, d: int, spread: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    center = torch.randn(d, generator=g, dtype=torch.float64)
    return center + spread * torch.randn(m, d, generator=g, dtype=torch.float64)


def _sq_dists_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Obvious reference: ||x - g_i||^2 for every row g_i, by direct subtraction."""
    return ((ref - x) ** 2).sum(dim=1)


def _all_pairs(ref: torch.Tensor) -> torch.Tensor:
    return torch.stack([_sq_dists_to(r, ref) for r in ref])


def _min_max_ok(x: torch.Tensor, ref: torch.Tensor) -> bool:
    return bool(_sq_dists_to(x, ref).max() <= _all_pairs(ref).max())


def _min_sum_ok(x: torch.Tensor, ref: torch.Tensor) -> bool:
    return bool(_sq_dists_to(x, ref).sum() <= _all_pairs(ref).sum(dim=1).min())


def _direction(ref: torch.Tensor, p: str) -> torch.Tensor:
    mu = ref.mean(0)
    return {"unit": mu / mu.norm(), "std": ref.std(0), "sign": torch.sign(mu)}[p]


CASES = [(A.MinMax, _min_max_ok), (A.MinSum, _min_sum_ok)]


def _run(cls: type[A.Attack], p: str, omniscient: bool, seed: int, f: int = 4, d: int = 25):
    own = _stack(seed, f, d)
    honest = _stack(seed + 1000, N - f, d)
    atk = cls(p=p, omniscient=omniscient)  # type: ignore[call-arg]
    out = atk(own, honest, ctx=A.AttackContext(n=N, f=f))
    ref = honest if omniscient else own
    return atk, out, ref


@pytest.mark.parametrize(("cls", "ok"), CASES, ids=["min_max", "min_sum"])
@pytest.mark.parametrize("p", ["unit", "std", "sign"])
@pytest.mark.parametrize("omniscient", [False, True])
def test_constraint_holds_at_lambda_and_fails_at_twice_lambda(cls, ok, p: str, omniscient: bool) -> None:
    atk, out, ref = _run(cls, p, omniscient, seed=0)
    lam = atk.last_lambda
    assert lam is not None and lam > 0
    mu, direction = ref.mean(0), _direction(ref, p)
    # every Byzantine row is mu - lambda * p
    torch.testing.assert_close(out, (mu - lam * direction).expand_as(out))
    assert ok(mu - lam * direction, ref)
    assert not ok(mu - 2 * lam * direction, ref)
    # and lambda is the boundary to the search's tolerance
    assert not ok(mu - (lam + 1e-4) * direction, ref)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    f=st.integers(2, 6),
    d=st.integers(1, 40),
    spread=st.floats(1e-2, 1e2),
    p=st.sampled_from(["unit", "std", "sign"]),
    which=st.sampled_from([0, 1]),
)
def test_constraint_property(seed: int, f: int, d: int, spread: float, p: str, which: int) -> None:
    cls, ok = CASES[which]
    own = _stack(seed, f, d, spread)
    atk = cls(p=p)
    out = atk(own, ctx=A.AttackContext(n=N, f=f))
    lam = atk.last_lambda
    assert lam is not None
    direction = _direction(own, p)
    assert ok(out[0], own)
    if lam > 1e-3:
        assert not ok(own.mean(0) - 2 * lam * direction, own)


def _closed_form(cls: type[A.Attack], ref: torch.Tensor, direction: torch.Tensor) -> float:
    """Exact boundary: the constraints are quadratics a_i + 2 lam b_i + lam^2 c in lambda."""
    mu = ref.mean(0)
    delta = ref - mu
    a, b, c = (delta**2).sum(1), delta @ direction, float(direction @ direction)
    pairs = _all_pairs(ref)
    if cls is A.MinMax:
        thr = float(pairs.max())
        roots = (-b + torch.sqrt(b**2 - c * (a - thr))) / c
        return float(roots.min())
    thr = float(pairs.sum(1).min())
    m = ref.shape[0]  # sum_i b_i = 0 because mu is the mean
    return math.sqrt((thr - float(a.sum())) / (m * c))


@pytest.mark.parametrize(("cls", "ok"), CASES, ids=["min_max", "min_sum"])
@pytest.mark.parametrize("spread", [1e-3, 1.0, 50.0])
def test_lambda_matches_the_closed_form_boundary(cls, ok, spread: float) -> None:
    # spread 50 puts lambda far above NDSS's original ceiling of 20 for the unit direction
    own = _stack(3, 5, 30, spread)
    atk = cls(p="unit")
    atk(own, ctx=A.AttackContext(n=N, f=5))
    expected = _closed_form(cls, own, _direction(own, "unit"))
    assert atk.last_lambda == pytest.approx(expected, abs=3e-5)


def test_identical_rows_give_the_mean_and_lambda_zero() -> None:
    own = torch.ones(4, 6)
    for cls in (A.MinMax, A.MinSum):
        atk = cls(p="std")
        out = atk(own, ctx=A.AttackContext(n=N, f=4))
        assert atk.last_lambda == 0.0
        torch.testing.assert_close(out, own)


def test_ndss_search_finds_boundaries_below_and_above_twenty() -> None:
    for boundary in (0.37, 3.7, 19.9, 1234.5):
        lam = A.ndss_search(functools.partial(operator.ge, boundary))  # feasible: x <= boundary
        assert boundary - 1e-4 <= lam <= boundary
    assert A.ndss_search(lambda x: x <= 0.0) == 0.0
    with pytest.raises(ValueError, match="got start=0"):
        A.ndss_search(lambda x: True, start=0.0)


def test_ndss_search_follows_the_original_steps_below_twenty() -> None:
    # NDSS: lambda = 10, then +-5, +-2.5, ... -> the first probes of a boundary at 7 are 10, 5, 7.5, 6.25
    probes: list[float] = []

    def feasible(x: float) -> bool:
        probes.append(x)
        return x <= 7.0

    A.ndss_search(feasible)
    assert probes[:5] == [20.0, 10.0, 5.0, 7.5, 6.25]  # the first probe checks the bracket [0, 20)


def test_float32_input_stays_float32_and_close_to_float64() -> None:
    own64 = _stack(5, 5, 50)
    atk32, atk64 = A.MinMax(p="std"), A.MinMax(p="std")
    out32 = atk32(own64.float(), ctx=A.AttackContext(n=N, f=5))
    out64 = atk64(own64, ctx=A.AttackContext(n=N, f=5))
    assert out32.dtype == torch.float32
    assert atk32.last_lambda == pytest.approx(atk64.last_lambda, rel=1e-4)
    torch.testing.assert_close(out32.double(), out64, rtol=1e-4, atol=1e-4)
