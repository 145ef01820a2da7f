"""Discrete Gaussian sampler, uniform source, conditional rounding."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _dp_stats import ALPHA
from scipy import stats

from dp.discrete import UniformSource, conditional_round, rounded_norm_bound, sample_discrete_gaussian
from dp.errors import PrivacyConfigError


def dg_pmf(sigma: float, support: np.ndarray) -> np.ndarray:
    k = np.arange(-60 * math.ceil(sigma), 60 * math.ceil(sigma) + 1)
    z = np.exp(-(k.astype(float) ** 2) / (2 * sigma**2)).sum()
    return np.exp(-(support.astype(float) ** 2) / (2 * sigma**2)) / z


@pytest.mark.parametrize("sigma", [0.7, 1.5, 6.0])
def test_discrete_gaussian_matches_pmf(sigma: float) -> None:
    # Chi-square goodness of fit against the exact pmf; false-failure rate ALPHA. Each tail is pooled
    # into its edge bin, the edge chosen so every bin expects at least 5 draws (the test's validity
    # condition; an unpooled far tail expecting 0.03 draws fails whenever one draw lands there).
    n = 200_000
    x = sample_discrete_gaussian(sigma, n, UniformSource())
    assert x.dtype == np.int64
    wide = np.arange(-math.ceil(12 * sigma) - 1, math.ceil(12 * sigma) + 2)
    p_wide = dg_pmf(sigma, wide)
    upper_tail = np.cumsum(p_wide[::-1])[::-1]  # P(X >= k) for k in wide
    edge = int(wide[(upper_tail * n >= 5) & (wide > 0)].max())
    support = np.arange(-edge, edge + 1)
    p = dg_pmf(sigma, support)
    p[0] = p[-1] = float(upper_tail[wide == edge][0])  # P(X <= -edge) = P(X >= edge)
    counts = np.bincount(np.clip(x, -edge, edge) + edge, minlength=support.size).astype(float)
    exp = p * n
    assert exp.min() >= 5
    stat = float(((counts - exp) ** 2 / exp).sum())
    assert stat < stats.chi2.ppf(1 - ALPHA, support.size - 1)


def test_wrong_sigma_is_rejected_by_the_same_check() -> None:
    x = sample_discrete_gaussian(1.6, 200_000, UniformSource())
    support = np.arange(-5, 6)
    p = dg_pmf(1.5, support)
    counts = np.array([(x == k).sum() for k in support], dtype=float)
    exp = p * x.size
    stat = float(((counts - exp) ** 2 / exp).sum())
    assert stat > stats.chi2.ppf(1 - ALPHA, len(support))


def test_discrete_gaussian_variance_large_sigma() -> None:
    sigma, n = 1000.0, 100_000
    x = sample_discrete_gaussian(sigma, n).astype(float)
    lo, hi = stats.chi2.ppf(ALPHA / 2, n), stats.chi2.ppf(1 - ALPHA / 2, n)
    assert lo <= float((x / sigma) @ (x / sigma)) <= hi


def test_zero_sigma_and_bad_args() -> None:
    assert not sample_discrete_gaussian(0.0, 5).any()
    with pytest.raises(PrivacyConfigError, match="got sigma=-1"):
        sample_discrete_gaussian(-1.0, 5)
    with pytest.raises(PrivacyConfigError, match="got size=-2"):
        sample_discrete_gaussian(1.0, -2)


def test_uniform_source_seeding() -> None:
    a, b = UniformSource(bytes(32)), UniformSource(bytes(32))
    assert np.array_equal(a.uniform(100), b.uniform(100))
    c = UniformSource(bytes(32))
    assert not np.array_equal(c.uniform(100), c.uniform(100))  # a fresh stream per call
    assert not np.array_equal(UniformSource().uniform(100), UniformSource().uniform(100))
    u = UniformSource().uniform(100_000)
    assert 0 < u.min() and u.max() < 1
    assert "seed" not in repr(a) and bytes(32).hex() not in repr(a)
    with pytest.raises(PrivacyConfigError, match="want 32 bytes"):
        UniformSource(b"short")


def test_conditional_round_bound_and_unbiased_on_average() -> None:
    src = UniformSource()
    rng = np.random.default_rng(0)
    x = rng.normal(size=256)
    x *= 10 / np.linalg.norm(x)
    bound = rounded_norm_bound(10.0, 256, math.exp(-0.5))
    assert bound < 10 + 16  # tighter than the hard bound
    rs = np.stack([conditional_round(x, bound, src) for _ in range(400)])
    assert (np.linalg.norm(rs, axis=1) <= bound + 1e-9).all()
    assert np.array_equal(rs, np.round(rs))
    assert np.all(np.floor(x) <= rs) and np.all(rs <= np.floor(x) + 1)
    assert float(np.abs(rs.mean(0) - x).max()) < 0.3


def test_conditional_round_gives_up_on_unclipped_input() -> None:
    with pytest.raises(PrivacyConfigError, match="no rounding within norm bound"):
        conditional_round(np.full(16, 10.5), bound=1.0, max_tries=5)


def test_rounded_norm_bound_known_answers() -> None:
    assert rounded_norm_bound(3.0, 16, 0.0) == 7.0
    want = math.sqrt(9 + 4 + math.sqrt(2 * 0.5) * (3 + 2))
    assert rounded_norm_bound(3.0, 16, math.exp(-0.5)) == pytest.approx(want)
    with pytest.raises(PrivacyConfigError, match=r"got beta=1\.0"):
        rounded_norm_bound(1.0, 4, 1.0)
