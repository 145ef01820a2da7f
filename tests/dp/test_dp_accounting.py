"""Accounting: the RDP check value, composition, failing inputs."""

from __future__ import annotations

import math

import pytest

from dp import Accountant, PrivacyConfigError, compose, noise_for_epsilon, statement


def test_rdp_check_value_tff_tutorial() -> None:
    # q = 120/3383, z = 1.2, 100 rounds, delta = 1e-5 -> epsilon ~ 1.99 (TFF DP tutorial).
    acc = Accountant("rdp")
    acc.step(noise_multiplier=1.2, sample_rate=120 / 3383, steps=100)
    assert acc.epsilon(1e-5) == pytest.approx(1.99, abs=0.05)


def test_prv_is_tighter_than_rdp_on_check_value() -> None:
    rdp, prv = Accountant("rdp"), Accountant("prv")
    for acc in (rdp, prv):
        acc.step(1.2, 120 / 3383, steps=100)
    e_rdp, e_prv = rdp.epsilon(1e-5), prv.epsilon(1e-5)
    assert 1.0 < e_prv < e_rdp


def test_steps_one_at_a_time_equal_steps_at_once() -> None:
    a, b = Accountant(), Accountant()
    for _ in range(50):
        a.step(1.1, 0.01)
    b.step(1.1, 0.01, steps=50)
    assert a.history == b.history == [(1.1, 0.01, 50)]
    assert a.epsilon(1e-5) == pytest.approx(b.epsilon(1e-5))


def test_epsilon_grows_with_steps_and_shrinks_with_noise() -> None:
    def eps(z: float, steps: int) -> float:
        acc = Accountant()
        acc.step(z, 0.05, steps)
        return acc.epsilon(1e-5)

    assert eps(1.0, 10) < eps(1.0, 100)
    assert eps(2.0, 100) < eps(1.0, 100)


def test_compose_is_pure_and_merges_equal_entries() -> None:
    h0: list[tuple[float, float, int]] = [(1.0, 0.1, 3)]
    h1 = compose(h0, 1.0, 0.1, 2)
    h2 = compose(h1, 2.0, 0.1)
    assert h0 == [(1.0, 0.1, 3)]
    assert h1 == [(1.0, 0.1, 5)]
    assert h2 == [(1.0, 0.1, 5), (2.0, 0.1, 1)]


def test_empty_history_and_zero_noise() -> None:
    acc = Accountant()
    assert acc.epsilon(1e-5) == 0.0
    acc.step(0.0, 0.5)
    assert acc.epsilon(1e-5) == math.inf


def test_epsilon_after_does_not_change_state() -> None:
    acc = Accountant()
    acc.step(1.0, 0.1, 10)
    before = acc.epsilon(1e-5)
    after = acc.epsilon_after(1e-5, 1.0, 0.1, steps=10)
    assert after > before
    assert acc.history == [(1.0, 0.1, 10)]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"noise_multiplier": -1.0, "sample_rate": 0.1}, "noise_multiplier"),
        ({"noise_multiplier": math.nan, "sample_rate": 0.1}, "noise_multiplier"),
        ({"noise_multiplier": 1.0, "sample_rate": 0.0}, "sample_rate"),
        ({"noise_multiplier": 1.0, "sample_rate": 1.5}, "sample_rate"),
        ({"noise_multiplier": 1.0, "sample_rate": 0.1, "steps": 0}, "steps"),
        ({"noise_multiplier": 1.0, "sample_rate": 0.1, "steps": 2.0}, "steps"),
    ],
)
def test_bad_step_raises(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(PrivacyConfigError, match=rf"got {match}=.*; want"):
        Accountant().step(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("delta", [0.0, 1.0, -1e-5, 2])
def test_bad_delta_raises(delta: float) -> None:
    with pytest.raises(PrivacyConfigError, match="got delta="):
        Accountant().epsilon(delta)


def test_unknown_kind_raises() -> None:
    with pytest.raises(PrivacyConfigError, match="got accountant kind='gdp'"):
        Accountant("gdp")  # type: ignore[arg-type]


def test_statement_keys_and_level() -> None:
    s = statement(epsilon=1.0, delta=1e-5, accountant="rdp", mechanism="m", sampling="s", level="user")
    assert set(s) == {"epsilon", "delta", "accountant", "mechanism", "sampling", "level"}
    with pytest.raises(PrivacyConfigError, match="level"):
        statement(epsilon=1.0, delta=1e-5, accountant="rdp", mechanism="m", sampling="s", level="x")  # type: ignore[arg-type]


def test_noise_for_epsilon_inverts_the_check_value() -> None:
    z = noise_for_epsilon(1.99, 1e-5, 120 / 3383, 100)
    assert z == pytest.approx(1.2, abs=0.02)
    acc = Accountant()
    acc.step(z, 120 / 3383, 100)
    assert acc.epsilon(1e-5) <= 1.99 + 0.01
    with pytest.raises(PrivacyConfigError, match="got target_epsilon=0"):
        noise_for_epsilon(0, 1e-5, 0.1, 10)
    with pytest.raises(PrivacyConfigError, match="got sample_rate=2"):
        noise_for_epsilon(1.0, 1e-5, 2, 10)
