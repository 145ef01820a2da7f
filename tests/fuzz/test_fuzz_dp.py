"""Fuzz: accountant parameters. Contract: a :class:`dp.DPError`, or an epsilon that is a number
>= 0 (``inf`` allowed: no noise) and no smaller than at fewer steps (composition only spends);
``noise_for_epsilon``: a finite multiplier >= 0."""

from __future__ import annotations

import math
import warnings
from typing import Any

import pytest
from fuzz_contract import FUZZ, expect, outcome
from hypothesis import given
from hypothesis import strategies as st

from dp import Accountant, DPError, noise_for_epsilon


@pytest.fixture(autouse=True, scope="module")
def _small_prv_bound() -> Any:
    """The suite's time budget: PRV grids are bounded at 32 MiB here (the library's bound is 1 GiB,
    whose largest grids take minutes); the contract is the same on either side of the bound."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("dp.accounting.PRV_MAX_BYTES", 2**25, raising=False)
        yield


Z = st.one_of(st.sampled_from([0.0, 1e-300, 1e-3, 0.2, 1.0, 100.0, 1e6]), st.floats(0, 10))
Q = st.one_of(st.sampled_from([1e-9, 1e-3, 0.2, 1.0]), st.floats(1e-6, 1.0))
DELTA = st.one_of(st.sampled_from([1e-300, 1e-12, 1e-5, 0.2, 0.5, 0.99]), st.floats(1e-10, 0.99))
STEPS = st.one_of(st.sampled_from([1, 100, 2736, 10**6]), st.integers(1, 5000))


def _epsilons(kind: str, z: float, q: float, steps: int, delta: float) -> tuple[float, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, b = Accountant(kind), Accountant(kind)  # type: ignore[arg-type]
        a.step(z, q, steps)
        b.step(z, q, max(steps // 2, 1))
        return a.epsilon(delta), b.epsilon(delta)


def _valid(pair: tuple[float, float]) -> bool:
    full, half = pair
    ok = [isinstance(e, float) and not math.isnan(e) and e >= 0 for e in pair]
    return all(ok) and full >= half * (1 - 1e-9) - 1e-9


@FUZZ
@given(kind=st.sampled_from(["rdp", "prv"]), z=Z, q=Q, steps=STEPS, delta=DELTA)
def test_accountant_parameters(kind: str, z: float, q: float, steps: int, delta: float) -> None:
    def call() -> Any:
        return _epsilons(kind, z, q, steps, delta)

    res, detail = outcome("dp", call, (DPError,), _valid, budget_s=20.0)
    expect("dp", res, detail, (kind, z, q, steps, delta))


@FUZZ
@given(
    eps=st.one_of(st.sampled_from([math.inf, math.nan, -1.0, 0.0, 1e-9, 1e9]), st.floats(0.01, 50)),
    q=Q,
    steps=st.integers(1, 2000),
    delta=DELTA,
)
def test_noise_for_epsilon(eps: float, q: float, steps: int, delta: float) -> None:
    def call() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return noise_for_epsilon(eps, delta, q, steps)

    res, detail = outcome(
        "dp", call, (DPError,), lambda z: isinstance(z, float) and math.isfinite(z) and z >= 0, budget_s=20.0
    )
    expect("dp", res, detail, (eps, q, steps, delta))
