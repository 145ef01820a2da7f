"""Issue 21, DP: the accountants never return a negative or NaN epsilon, never allocate past their
stated memory bound, and report Opacus's numerical failures as typed errors."""

from __future__ import annotations

import math
import warnings

import pytest

from dp import Accountant, AccountingError, DDGConfig, PrivacyConfigError, noise_for_epsilon
from dp.accounting import PRV_MAX_BYTES


@pytest.fixture(autouse=True)
def _quiet_opacus() -> None:
    warnings.filterwarnings("ignore", message="Optimal order")


@pytest.mark.parametrize("kind", ["rdp", "prv"])
def test_epsilon_is_never_negative(kind: str) -> None:
    # Main: rdp returned -0.693 (prv also negative) for a large delta.
    acc = Accountant(kind)  # type: ignore[arg-type]
    acc.step(100.0, 1e-6, 100)
    assert acc.epsilon(0.5) == 0.0


def test_prv_refuses_a_grid_past_the_memory_bound_before_allocating() -> None:
    # Main: this in-range input grew past 24 GB.
    acc = Accountant("prv")
    acc.step(0.2, 0.2, 2736)
    with pytest.raises(AccountingError, match=r"255,146,568 points .*want at most 1 GiB"):
        acc.epsilon(0.2)
    assert PRV_MAX_BYTES == 2**30


def test_prv_within_the_bound_still_matches_rdp_roughly() -> None:
    prv, rdp = Accountant("prv"), Accountant("rdp")
    for a in (prv, rdp):
        a.step(1.1, 0.01, 1000)
    assert 0 < prv.epsilon(1e-5) <= rdp.epsilon(1e-5)


@pytest.mark.parametrize("kind", ["rdp", "prv"])
def test_denormal_noise_gives_inf_not_a_crash_or_a_hang(kind: str) -> None:
    # Main: ZeroDivisionError from Opacus (z = 1e-300); z = 1.5e-161 ran past 60 s in the RDP series.
    for z in (1e-300, 1.5e-161):
        acc = Accountant(kind)  # type: ignore[arg-type]
        acc.step(z, 1e-9 if z > 1e-200 else 0.5, 1)
        assert acc.epsilon(1e-5) == math.inf


def test_opacus_exceptions_are_wrapped(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self: object, delta: float) -> float:
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr("opacus.accountants.RDPAccountant.get_epsilon", boom)
    acc = Accountant("rdp")
    acc.step(1.0, 0.01, 10)
    with pytest.raises(AccountingError, match="ZeroDivisionError"):
        acc.epsilon(1e-5)


def test_prv_tiny_delta_value_error_is_typed() -> None:
    acc = Accountant("prv")
    acc.step(1e6, 1e-9, 1)
    with pytest.raises(AccountingError, match="ValueError"):
        acc.epsilon(1e-300)


def test_noise_for_infinite_epsilon_is_zero() -> None:
    # Main: returned 10.0 (the bisection's upper end).
    assert noise_for_epsilon(math.inf, 1e-5, 0.01, 100) == 0.0
    with pytest.raises(PrivacyConfigError, match="target_epsilon=nan"):
        noise_for_epsilon(math.nan, 1e-5, 0.01, 100)


@pytest.mark.parametrize(("key", "value"), [("beta", "x"), ("wrap_prob", None), ("clip", True)])
def test_ddg_config_types_are_checked(key: str, value: object) -> None:
    # Main: DDGConfig(beta="x") raised TypeError from a comparison.
    kw: dict[str, object] = {"dim": 4, "n_clients": 2, "clip": 1.0, "noise_multiplier": 1.0, key: value}
    with pytest.raises(PrivacyConfigError, match=f"got {key}="):
        DDGConfig(**kw)  # type: ignore[arg-type]
