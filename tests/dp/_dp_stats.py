"""Shared statistical check: a two-sided chi-square test on the sample variance of Gaussian noise."""

from __future__ import annotations

import torch
from scipy import stats

# False-failure rate of every noise-std test that uses this check (two-sided, per call).
ALPHA = 1e-6


def assert_gaussian_std(noise: torch.Tensor, std: float, alpha: float = ALPHA) -> None:
    """Fail if ``noise`` (iid N(0, std^2) entries, mean known to be 0) has another std.

    sum((x / std)^2) ~ chi2(k) under the hypothesis; reject outside [ppf(alpha/2), ppf(1 - alpha/2)].
    A correct implementation fails with probability alpha; a std off by 5% fails almost surely at
    k >= 20,000.
    """
    x = noise.detach().double().flatten() / std
    k = x.numel()
    s = float((x * x).sum())
    lo, hi = stats.chi2.ppf(alpha / 2, k), stats.chi2.ppf(1 - alpha / 2, k)
    assert lo <= s <= hi, f"sum of squares {s:.1f} outside [{lo:.1f}, {hi:.1f}] for k={k}; std is off"
