"""Distributed discrete Gaussian: rotation, ring, configuration, end-to-end sum, accounting."""

from __future__ import annotations

import math

import nacl.utils
import numpy as np
import pytest
from _dp_stats import ALPHA
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

from dp import Accountant
from dp.distributed import (
    RDP_ORDERS,
    DDGClient,
    DDGConfig,
    DDGServer,
    ddg_rdp,
    ddg_tau,
    from_ring,
    hadamard,
    padded_dim,
    rdp_epsilon,
    rotate,
    rotation_signs,
    to_ring,
    unrotate,
)
from dp.errors import ModularWrapError, PrivacyConfigError

SEED = bytes(range(32))


def test_hadamard_known_answer() -> None:
    assert np.allclose(hadamard(np.array([1.0, 0.0])), np.array([1, 1]) / math.sqrt(2))
    h4 = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]]) / 2.0
    assert np.allclose(hadamard(np.eye(4)), h4)
    with pytest.raises(PrivacyConfigError, match="power of two"):
        hadamard(np.zeros(6))


@settings(max_examples=40, deadline=None)
@given(
    arrays(np.float64, st.integers(1, 300), elements=st.floats(-1e3, 1e3)),
    st.binary(min_size=32, max_size=32),
)
def test_rotation_is_orthonormal_and_invertible(x: np.ndarray, seed: bytes) -> None:
    y = rotate(x, seed)
    assert y.shape == (padded_dim(x.size),)
    assert np.linalg.norm(y) == pytest.approx(np.linalg.norm(x), rel=1e-9, abs=1e-9)
    assert np.allclose(unrotate(y, seed, x.size), x, atol=1e-9)


def test_rotation_signs_depend_on_the_seed_only() -> None:
    a, b = rotation_signs(SEED, 1024), rotation_signs(SEED, 1024)
    assert np.array_equal(a, b) and set(np.unique(a)) == {-1.0, 1.0}
    assert not np.array_equal(a, rotation_signs(bytes(32), 1024))
    with pytest.raises(PrivacyConfigError, match="want 32 bytes"):
        rotation_signs(b"x", 8)


def test_rotation_spreads_a_spike() -> None:
    x = np.zeros(4096)
    x[7] = 1.0
    assert np.abs(rotate(x, SEED)).max() == pytest.approx(1 / 64)


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 62), st.data())
def test_ring_round_trip(bits: int, data: st.DataObject) -> None:
    half = 1 << (bits - 1)
    v = np.array(data.draw(st.lists(st.integers(-half, half - 1), min_size=1, max_size=20)), dtype=np.int64)
    assert np.array_equal(from_ring(to_ring(v, bits), bits), v)


def test_to_ring_refuses_a_value_that_wraps() -> None:
    with pytest.raises(ModularWrapError, match="got an integer of magnitude 128; want within"):
        to_ring(np.array([1, 128]), 8)
    to_ring(np.array([-128, 127]), 8)


def test_config_validation() -> None:
    with pytest.raises(PrivacyConfigError, match="want more bits"):
        DDGConfig(dim=1000, n_clients=100, clip=1.0, noise_multiplier=1.0, bits=6)
    cases: list[tuple[dict[str, float], str]] = [
        ({"dim": 0}, "got dim=0"),
        ({"n_clients": 0}, "got n_clients=0"),
        ({"clip": 0.0}, "got clip=0.0"),
        ({"noise_multiplier": -1.0}, "got noise_multiplier=-1.0"),
        ({"bits": 63}, "got bits=63"),
        ({"wrap_prob": 0.0}, "got wrap_prob=0.0"),
    ]
    for kw, match in cases:
        base: dict[str, float] = {"dim": 10, "n_clients": 4, "clip": 1.0, "noise_multiplier": 1.0}
        with pytest.raises(PrivacyConfigError, match=match):
            DDGConfig(**{**base, **kw})  # type: ignore[arg-type]


def test_more_bits_give_a_finer_grid() -> None:
    g = [
        DDGConfig(dim=5000, n_clients=100, clip=1.0, noise_multiplier=1.0, bits=b).gamma for b in (12, 16, 20)
    ]
    assert g[0] > g[1] > g[2]
    assert g[0] / g[1] == pytest.approx(16, rel=0.05)


def run_round(cfg: DDGConfig, xs: np.ndarray, seed: bytes = SEED) -> tuple[np.ndarray, DDGServer]:
    mask = np.uint64((1 << cfg.bits) - 1)
    total = np.zeros(cfg.padded_dim, dtype=np.uint64)
    for x in xs:
        total = (total + DDGClient(cfg).encode(x, seed)) & mask
    server = DDGServer(cfg)
    return server.decode(total, seed, len(xs)), server


def test_sum_without_noise_is_exact_up_to_rounding() -> None:
    rng = np.random.default_rng(1)
    xs = rng.normal(size=(8, 300))
    cfg = DDGConfig(dim=300, n_clients=8, clip=2.0, noise_multiplier=0.0, bits=32)
    clipped = xs * np.minimum(1, 2.0 / np.linalg.norm(xs, axis=1, keepdims=True))
    out, _ = run_round(cfg, xs)
    # rounding error: at most one grid step per client and rotated coordinate, in L2 at most
    # gamma * n * sqrt(D); much smaller in practice.
    err = np.linalg.norm(out - clipped.sum(0))
    assert err <= cfg.gamma * 8 * math.sqrt(cfg.padded_dim)
    assert err < 1e-3 * np.linalg.norm(clipped.sum(0))


def test_sum_noise_has_the_central_std() -> None:
    # Error of the decoded sum ~ z * gamma * Delta2 per coordinate (plus tiny rounding): chi-square test on
    # the rotated error, with the rounding variance n/4 grid steps^2 as the upper slack.
    n, d, z = 5, 4096, 0.8
    cfg = DDGConfig(dim=d, n_clients=n, clip=1.0, noise_multiplier=z, bits=24)
    rng = np.random.default_rng(2)
    xs = rng.normal(size=(n, d)) * 0.01
    out, _ = run_round(cfg, xs)
    err = out - xs.sum(0)
    g = cfg.gamma
    sd_noise = z * g * cfg.delta2(g) / 1.0
    sd_hi = math.sqrt(sd_noise**2 + n * g**2 / 4)
    s = float(err @ err)
    assert stats.chi2.ppf(ALPHA / 2, d) * sd_noise**2 <= s <= stats.chi2.ppf(1 - ALPHA / 2, d) * sd_hi**2


def test_client_refuses_bad_updates() -> None:
    cfg = DDGConfig(dim=8, n_clients=2, clip=1.0, noise_multiplier=1.0)
    client = DDGClient(cfg)
    with pytest.raises(PrivacyConfigError, match="got an update of length 3; want 8"):
        client.encode(np.zeros(3), SEED)
    with pytest.raises(PrivacyConfigError, match="NaN or infinite"):
        client.encode(np.full(8, np.nan), SEED)
    with pytest.raises(PrivacyConfigError, match=r"got a ring sum of shape \(3,\)"):
        DDGServer(cfg).decode(np.zeros(3, np.uint64), SEED, 2)


def test_default_client_noise_is_not_fixed_seed() -> None:
    cfg = DDGConfig(dim=64, n_clients=2, clip=1.0, noise_multiplier=1.0)
    x = np.zeros(64)
    assert not np.array_equal(DDGClient(cfg).encode(x, SEED), DDGClient(cfg).encode(x, SEED))
    seed = nacl.utils.random(32)
    assert np.array_equal(DDGClient(cfg, seed).encode(x, SEED), DDGClient(cfg, seed).encode(x, SEED))


def test_accounting_matches_gaussian_when_tau_is_negligible() -> None:
    # sigma large -> tau ~ 0 -> RDP(alpha) = alpha / (2 z^2): the continuous Gaussian at q = 1.
    assert ddg_tau(5.0, 100) < 1e-100
    z = 1.3
    rdp = ddg_rdp(delta2=100.0, sigma=z * 100.0 / math.sqrt(10), n=10, dim=1024)
    assert np.allclose(rdp, np.array(RDP_ORDERS) / (2 * z**2))
    acc = Accountant("rdp")
    acc.step(z, 1.0, steps=3)
    assert rdp_epsilon(3 * rdp, 1e-5) == pytest.approx(acc.epsilon(1e-5), rel=0.02)


def test_accounting_known_answer_with_tau() -> None:
    # sigma = 0.5, n = 2: tau = 10 exp(-2 pi^2 / 4 / 2); s = 2 / (sqrt(2) / 2) = 2 sqrt(2)
    tau = 10 * math.exp(-(math.pi**2) / 4)
    assert ddg_tau(0.5, 2) == pytest.approx(tau)
    rdp = ddg_rdp(2.0, 0.5, 2, 16, orders=(2, 8))
    s = 2 * math.sqrt(2)
    want = [min(a / 2 * s**2 + tau * 16, a / 2 * (s + 4 * tau) ** 2) for a in (2, 8)]
    assert np.allclose(rdp, want)


def test_accounting_penalizes_small_sigma_and_fewer_contributors() -> None:
    # With sigma = 0.5 the tau term dominates (Kairouz et al.'s correction for discreteness).
    assert (ddg_rdp(2.0, 0.5, 10, 1024) > 10 * ddg_rdp(2.0, 0.5, 10, 1)).all()
    cfg = DDGConfig(dim=100, n_clients=10, clip=1.0, noise_multiplier=1.0)
    assert np.allclose(cfg.rdp(5), 2 * cfg.rdp(10))
    assert np.isinf(ddg_rdp(1.0, 0.0, 10, 4)).all()
    assert rdp_epsilon(ddg_rdp(1.0, 0.0, 10, 4), 1e-5) == math.inf
    with pytest.raises(PrivacyConfigError, match=r"want >= 0\.5"):
        ddg_rdp(1.0, 0.4, 10, 4)
    with pytest.raises(PrivacyConfigError, match=r"want sigma >= 0\.5"):
        DDGConfig(dim=4, n_clients=1000, clip=1.0, noise_multiplier=1e-3)
    assert rdp_epsilon(np.zeros(len(RDP_ORDERS)), 1e-5) == 0.0


def test_server_statement_composes_rounds() -> None:
    cfg = DDGConfig(dim=32, n_clients=4, clip=1.0, noise_multiplier=1.0)
    server = DDGServer(cfg)
    assert server.epsilon(1e-5) == 0.0
    for contributors in (4, 3):
        server.decode(np.zeros(cfg.padded_dim, np.uint64), SEED, contributors)
    s = server.privacy_statement(1e-5)
    assert s["rounds"] == 2 and s["min_contributors"] == 3
    assert np.allclose(server.rdp_total, cfg.rdp(4) + cfg.rdp(3))
    assert s["epsilon"] == pytest.approx(rdp_epsilon(cfg.rdp(4) + cfg.rdp(3), 1e-5))
    assert s["level"] == "user" and "q=1" in s["sampling"]
