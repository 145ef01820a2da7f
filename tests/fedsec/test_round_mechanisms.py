"""One run compares the same rule in the clear and under confidentiality mechanisms (``[[defense]]``
entries with ``mechanism``), and every round's record keeps what the protocol measured."""

from __future__ import annotations

import pytest
import torch
from sim_helpers import tiny

import fedsec
from fedsec.errors import ConfigError
from fedsec.round import RoundRecord
from fedsec.simulation import simulate

ATTACK = {"name": "sign_flip", "f": 2}
BUCKETS = {"rule": "mean", "pre": ["bucketing"], "pre_kwargs": {"bucketing": {"s": 2}}}


def test_one_config_runs_the_rule_in_the_clear_and_under_secure_aggregation() -> None:
    cfg = tiny(
        train={"rounds": 2},
        defense=[
            {"rule": "mean"},
            {"rule": "mean", "mechanism": "secagg", "mechanism_kwargs": {"clip": 4.0}},
            {
                "rule": "mean",
                "pre": ["bucketing"],
                "pre_kwargs": {"bucketing": {"s": 2}},
                "mechanism": "plain",
            },
            {
                "rule": "mean",
                "pre": ["bucketing"],
                "pre_kwargs": {"bucketing": {"s": 2}},
                "mechanism": "secagg",
            },
        ],
    )
    labels = [d.label for d in cfg.defenses]
    assert labels == ["mean", "mean @ secagg", "mean(bucketing) @ plain", "mean(bucketing) @ secagg"]
    units = {u.label: u for u in (simulate(unit) for unit in cfg.units())}
    # Secure sums are exact up to the fixed-point encoding: the models match the clear run's.
    torch.testing.assert_close(units["mean @ secagg"].weights, units["mean"].weights, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(
        units["mean(bucketing) @ secagg"].weights,
        units["mean(bucketing) @ plain"].weights,
        rtol=1e-3,
        atol=1e-4,
    )
    secure = units["mean @ secagg"].summary
    assert secure["protocol"] == "secagg"
    # The protocol's meter is kept: the masked upload really sent bytes, per role and phase.
    meter = secure["protocol_meter"]
    assert any(k.startswith("client/") and v["bytes_sent"] > 0 for k, v in meter.items()), meter
    assert "sum_of_survivors" in secure["leakage_keys"]["server"]
    assert secure["leakage_keys"]["server"] == sorted(secure["leakage_keys"]["server"])
    assert "updates" in units["mean"].summary["leakage_keys"]["server"]


def test_observers_receive_every_round_record() -> None:
    seen: list[RoundRecord] = []
    res = simulate(
        tiny(train={"rounds": 3}, attack=ATTACK, defense={"rule": "krum"}), observers=[seen.append]
    )
    assert [r.round for r in seen] == [1, 2, 3]
    for r in seen:
        assert r.seconds > 0 and r.aggregate.shape == res.weights.shape
        assert len(r.accepted) == 1 and r.tpr is not None  # Krum keeps one client and names it
        assert "server/aggregate" in r.meter
    bad = set(res.summary["byzantine_clients"])
    assert not any(set(r.accepted) & bad for r in seen)  # sign-flipped updates are never Krum's pick


def test_an_unsupported_composition_is_a_config_error() -> None:
    cfg = tiny(defense={"rule": "median", "mechanism": "secagg"})
    with pytest.raises(ConfigError, match=r"secagg: got rule median .*; want Mean"):
        simulate(cfg)
    with pytest.raises(ConfigError, match=r"defense\.mechanism: got 'ckkss'; want one of"):
        simulate(tiny(defense={"rule": "mean", "mechanism": "ckkss"}))


@pytest.mark.slow
def test_multi_krum_in_the_clear_and_under_ckks_agree() -> None:
    cfg = tiny(
        train={"rounds": 2},
        attack=ATTACK,
        defense=[
            {"rule": "multi_krum"},
            {"rule": "multi_krum", "mechanism": "ckks", "mechanism_kwargs": {"params": {"value_range": 8.0}}},
        ],
    )
    plain, enc = (fedsec.run(unit, write=False).units[0] for unit in cfg.units())
    torch.testing.assert_close(enc.weights, plain.weights, rtol=1e-3, atol=1e-4)
    assert "pairwise_sq_distances" in enc.summary["leakage_keys"]["key_holder"]


def test_rule_extras_reach_the_rule_as_call_arguments() -> None:
    """FLTrust's root gradient and Reputation's ids go through ``run(..., extras=)`` into the rule's
    call, with and without server-side DP around it; no wrapper object holds them between rounds."""
    import numpy as np

    import protocols
    import robust
    from dp.central import DPFedAvg
    from fedsec.build import rule_extras

    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, generator=g, dtype=torch.float64)
    root = torch.randn(5, generator=g, dtype=torch.float64)
    fltrust = robust.make("fltrust")
    assert rule_extras(fltrust, root=root, ids=np.arange(6)) == {"root": root}
    assert rule_extras(robust.Mean(), root=root, ids=np.arange(6)) == {}
    want = fltrust(x, root=root)
    got = protocols.make("plain", rule=fltrust).run(x, extras={"root": root}).aggregate
    torch.testing.assert_close(got, want)
    other = protocols.make("plain", rule=fltrust).run(x, extras={"root": -root}).aggregate
    assert not torch.allclose(other, want)  # the root given in this call is the one used
    dp = DPFedAvg(fltrust, clip=1e9, noise_multiplier=0.0, expected_clients=6)
    torch.testing.assert_close(dp(x, root=root), want)
    rep = robust.Reputation(robust.Mean())
    ids = np.array([3, 7, 9, 11, 12, 20])
    assert set(rule_extras(rep, root=None, ids=ids)) == {"ids"}


def test_observers_see_the_weights_after_each_step() -> None:
    """A user observer receives every round's record with the global model after the server's step."""
    records: list[RoundRecord] = []
    res = simulate(tiny(train={"rounds": 3}), observers=[records.append])
    assert [r.round for r in records] == [1, 2, 3]
    assert records[-1].weights is not None
    assert torch.equal(records[-1].weights.cpu(), res.weights)
    assert not torch.equal(records[0].weights, records[-1].weights)


@pytest.mark.slow
def test_prio_rejects_a_large_norm_attacker_before_it_reaches_the_model() -> None:
    seen: list[RoundRecord] = []
    cfg = tiny(
        train={"rounds": 2},
        attack={"name": "large_norm", "f": 2},
        defense={"rule": "mean", "mechanism": "prio", "mechanism_kwargs": {"bound": 100.0, "wr_checks": 20}},
    )
    res = simulate(cfg, observers=[seen.append])
    bad = set(res.summary["byzantine_clients"])
    assert res.summary["protocol"] == "prio" and len(bad) == 2
    for r in seen:
        assert r.accepted and not set(r.accepted) & bad  # rejected by the PINE norm proof, every round
        assert float(r.aggregate.norm()) <= 100.0
