"""Mechanism x rule: every supported pair against the plaintext rule, every other pair refused.

The expectation table :data:`SUPPORTED` is written here, independently of the mechanisms' own
dispatch, and every (mechanism, rule) pair of :data:`MECHANISMS` x :data:`RULES` is checked against
it: a supported pair runs one round and must match the plaintext rule on the same stack within the
mechanism's stated tolerance; any other pair must raise :class:`protocols.UnsupportedComposition`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

import protocols
import robust
from robust.statistics import Statistic

pytestmark = pytest.mark.filterwarnings("ignore:paillier key_bits=1024:UserWarning")

N, D, F = 7, 6, 1
CLIP = 1.5

RULES: dict[str, Callable[[], Any]] = {
    "mean": robust.Mean,
    "krum": lambda: robust.Krum(f=F),
    "multi_krum": lambda: robust.MultiKrum(f=F),
    "median": robust.Median,
    "trimmed_mean": lambda: robust.TrimmedMean(f=F),
    "mean(bucketing)": lambda: robust.Pipeline(pre=[robust.Bucketing(s=2, seed=5)], rule=robust.Mean()),
    "mean(clip)": lambda: robust.Pipeline(pre=[robust.Clip(c=CLIP)], rule=robust.Mean()),
    "mean(nnm)": lambda: robust.Pipeline(pre=[robust.NNM(f=F)], rule=robust.Mean()),
    "trimmed_mean(nnm)": lambda: robust.Pipeline(pre=[robust.NNM(f=F)], rule=robust.TrimmedMean(f=F)),
    "geometric_median": robust.GeometricMedian,
    "centered_clipping": robust.CenteredClipping,
    "bulyan": lambda: robust.Bulyan(f=F),
    "dnc": lambda: robust.DnC(f=F, seed=1),
    "sign_majority": robust.SignMajority,
    "cmls": lambda: robust.CMLS(f=F),
}

LINEAR = {"mean", "mean(bucketing)"}
SUPPORTED: dict[str, set[str]] = {
    "plain": set(RULES),
    "secagg": LINEAR,
    "secagg_plus": LINEAR,
    "secagg_normbound": LINEAR,
    "secagg_ddp": LINEAR | {"mean(clip)"},
    "ckks": LINEAR | {"mean(clip)", "krum", "multi_krum", "median", "trimmed_mean"},
    "paillier": {"mean"},
    "prio": LINEAR | {"mean(clip)", "krum", "multi_krum", "mean(nnm)"},
}

#: Mechanism parameters kept small (CKKS: the default N = 8192, one chunk; Paillier: 1024-bit keys).
PARAMS: dict[str, dict[str, Any]] = {
    "plain": {},
    "secagg": {"clip": 2.0, "frac_bits": 16},
    "secagg_plus": {"clip": 2.0, "frac_bits": 16},
    "secagg_normbound": {"bound": 10.0, "frac_bits": 10},
    "secagg_ddp": {"noise_multiplier": 0.0, "bits": 32, "clip": 10.0},
    "ckks": {"params": {"value_range": 2.0}},
    "paillier": {"key_bits": 1024, "value_range": 2.0},
    "prio": {"bound": 8.0, "frac_bits": 15, "wr_checks": 20},
}


def stack() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = 0.3 * torch.randn(N, D, generator=g, dtype=torch.float64)
    x[0] += 1.0  # an outlier: selections and clipping act
    return x.to(torch.float32)


def tolerance(mechanism: str, proto: Any, ref: torch.Tensor) -> float:
    """The stated max-abs error of one round of ``mechanism`` against the plaintext rule."""
    if mechanism == "plain":
        return 0.0  # the same rule on the same tensor
    if mechanism in ("secagg", "secagg_plus"):
        # stochastic rounding: < 1 ulp per value and client; weights w / max w rescale by <= n
        return N * 2.0**-proto.encoding.frac_bits
    if mechanism == "secagg_normbound":
        return N * 2.0**-proto.config.frac_bits
    if mechanism == "secagg_ddp":
        # no noise (z = 0): conditional rounding to the grid gamma in the rotated space; the
        # rotation is orthogonal, so one client's L2 error is <= gamma sqrt(D_pad), and so is the mean's
        cfg = proto.config(N, D)
        return cfg.gamma * math.sqrt(cfg.padded_dim) + 1e-6
    if mechanism == "ckks":
        # tests/protocols/test_ckks_protocols.py's relative bound plus 7 sigma of the flooding noise
        return 1e-4 * float(ref.abs().max()) + 7.0 * proto.params.flood_std
    if mechanism == "prio":
        # round to nearest on 2^-f: error <= 2^-(f+1) per value, and so for the mean
        return 2.0**-proto.frac_bits
    if mechanism == "paillier":
        return N * 2.0 ** -proto.params.encoding().scale_bits(N)
    raise AssertionError(mechanism)


PAIRS = [(m, r) for m in SUPPORTED for r in RULES]
#: secagg_normbound proves every client's bound (about 9 s a round here) and prio's PINE proofs take
#: about 5 s: those run with the slow tests, but for prio's mean and Krum.
SLOW = {(m, r) for m in ("secagg_normbound", "prio") for r in RULES} - {("prio", "mean"), ("prio", "krum")}
RUNS = [
    pytest.param(m, r, marks=[pytest.mark.slow] if (m, r) in SLOW else [])
    for m, r in PAIRS
    if r in SUPPORTED[m]
]


@pytest.mark.parametrize(("mechanism", "rule"), RUNS)
def test_supported_pair_matches_the_plaintext_rule(mechanism: str, rule: str) -> None:
    x = stack()
    agg = RULES[rule]()
    plaintext = copy.deepcopy(agg)  # same seed and state: bucketing draws the same permutation
    params = dict(PARAMS[mechanism])
    if rule == "mean(clip)":
        params.pop("clip", None)  # secagg_ddp takes the rule's clip as the clients' L2 clip
        params.pop("bound", None)  # prio proves the rule's clip as its L2 bound
    proto = protocols.make(mechanism, rule=agg, **params)
    assert proto.name == f"{rule} @ {mechanism}"
    res = proto.run(x, rng=np.random.default_rng(0))
    ref = plaintext(x if mechanism == "plain" else x.double()).float()
    err = float((res.aggregate.float() - ref).abs().max())
    assert err <= tolerance(mechanism, proto.inner, ref), f"{proto.name}: max error {err:.3g}"
    sel = getattr(plaintext, "last_selection", None)
    if sel is not None and mechanism != "plain":
        assert set(res.accepted) >= set(sel) if rule.startswith("mean") else res.accepted == sorted(sel)
    assert "statistic" in {k for party in res.leakage.learns.values() for k in party}


@pytest.mark.parametrize(("mechanism", "rule"), [p for p in PAIRS if p[1] not in SUPPORTED[p[0]]])
def test_unsupported_pair_is_refused(mechanism: str, rule: str) -> None:
    with pytest.raises(protocols.UnsupportedComposition, match=rf"^{mechanism}: got rule .*; want "):
        protocols.make(mechanism, rule=RULES[rule](), **PARAMS[mechanism])


def test_the_refusal_says_what_the_rule_needs() -> None:
    with pytest.raises(protocols.UnsupportedComposition) as e:
        protocols.make("secagg", rule=robust.GeometricMedian())
    assert str(e.value) == (
        "secagg: got rule geometric_median (needs the raw rows); want Mean, or Mean after bucketing"
    )
    with pytest.raises(protocols.UnsupportedComposition, match=Statistic.DISTANCES.value):
        protocols.make("paillier", rule=robust.MultiKrum(f=1))


def test_unknown_mechanism_and_bad_parameters_are_refused() -> None:
    with pytest.raises(protocols.UnknownMechanism, match="got 'ckkss'; want"):
        protocols.make("ckkss")
    with pytest.raises(protocols.UnknownMechanism, match="got mechanism 'ckks_krum'; want one of"):
        protocols.make("ckks_krum", rule=robust.Krum(f=1))  # an alias is not a mechanism
    with pytest.raises(protocols.CompositionError, match="got parameters"):
        protocols.make("ckks", rule=robust.Mean(), workers=2)  # ckks_mean takes no workers
    with pytest.raises(protocols.CompositionError, match="got parameters"):
        protocols.make("plain", rule=robust.Mean(), clip=1.0)
    with pytest.raises(protocols.CompositionError, match="want them equal"):
        rule = robust.Pipeline(pre=[robust.Clip(c=1.0)], rule=robust.Mean())
        protocols.make("secagg_ddp", rule=rule, clip=2.0)


def test_aliases_and_mechanism_defaults() -> None:
    # The registered protocol names build the classes behind the mechanisms, as before.
    assert type(protocols.make("ckks_multi_krum", f=1)).__name__ == "CKKSMultiKrum"
    assert type(protocols.make("paillier_mean", key_bits=1024)).__name__ == "PaillierMean"
    # A mechanism without a protocol of its name composes the mean; the inner class is the alias's.
    ckks = protocols.make("ckks")
    assert ckks.name == "mean @ ckks" and type(ckks.inner).__name__ == "CKKSMean"
    multi = protocols.make("ckks", rule=robust.MultiKrum(f=2, m=3))
    assert (multi.inner.f, multi.inner.m) == (2, 3)


def test_pre_aggregated_rule_refuses_client_weights() -> None:
    rule = robust.Pipeline(pre=[robust.Bucketing(s=2, seed=0)], rule=robust.Mean())
    proto = protocols.make("secagg", rule=rule)
    with pytest.raises(protocols.CompositionError, match="want weights=None"):
        proto.run(stack(), weights=torch.ones(N))
