"""The "secagg_normbound" protocol: honest rounds, attackers rejected at proof verification, the link
check against a client that masks another vector, dropouts, probabilistic checking, validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import protocols
from protocols.channel import frame_bytes
from protocols.secagg_normbound import (
    NormBoundConfig,
    NormBoundServer,
    SecAggNormBound,
    blinding_from_limb_sums,
    blinding_limbs,
    detection_probability,
    encode_within_bound,
)
from robust.attacks import AttackContext, LargeNorm, Scaling
from secagg.errors import ProtocolAbort, SecAggError
from secagg.normbound import LinkCheckFailed, NormBoundParams
from secagg.normbound.group import L

BOUND = 1.0
FRAC = 6  # coarse fixed point keeps the proofs small; the aggregate is exact to 1/2^6 per entry
TOL = 1.5 / 2**FRAC


def _honest(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True) * np.linspace(0.3, BOUND, n)[:, None]


def test_registered_and_honest_round_matches_the_mean() -> None:
    proto = protocols.make("secagg_normbound", bound=BOUND, frac_bits=FRAC)
    assert isinstance(proto, SecAggNormBound)
    x = _honest(4, 5)
    res = proto.run(torch.tensor(x, dtype=torch.float32))
    assert res.accepted == [0, 1, 2, 3]
    assert proto.last_rejected == {}
    # stochastic rounding: each encoded entry is within 1/s of the clipped value
    np.testing.assert_allclose(res.aggregate.numpy(), x.mean(0), atol=TOL)
    assert set(res.meter.phases()) >= {"commit_prove", "verify", "masked_input", "unmasking", "link_check"}
    params = proto.config.params(5)
    commit = frame_bytes("client[2]", "server", "commit_prove", 32 + params.proof_size)  # C || proof, framed
    assert res.meter.costs[("client[2]", "commit_prove")].bytes_sent == commit
    assert res.leakage.keys("server") == {
        "sum_of_survivors", "survivors", "dropped", "rejected", "within_bound", "unverified", "blamed",
        "blame",
    }  # fmt: skip
    assert res.leakage.learns["server"]["blamed"] == {} and res.leakage.learns["server"]["blame"] == {}
    assert res.leakage.learns["server"]["within_bound"] == [0, 1, 2, 3]
    assert res.leakage.learns["client"] == {}


@pytest.mark.parametrize("attack", [Scaling(factor=10.0), LargeNorm(norm=1e6)])
def test_scaling_and_large_norm_attackers_are_rejected_at_verification(attack: object) -> None:
    n, f, d = 5, 2, 6
    x = _honest(n, d, seed=1)
    own = torch.tensor(x[:f], dtype=torch.float32)
    byz = attack(own, ctx=AttackContext(n=n, f=f))  # type: ignore[operator]
    stack = torch.cat([byz, torch.tensor(x[f:], dtype=torch.float32)])
    proto = SecAggNormBound(bound=BOUND, frac_bits=FRAC)
    res = proto.run(stack)
    assert res.accepted == [2, 3, 4]
    assert sorted(proto.last_rejected) == [0, 1]
    assert all(v.startswith("ProofRejected") for v in proto.last_rejected.values())
    assert res.leakage.learns["server"]["rejected"] == proto.last_rejected
    np.testing.assert_allclose(res.aggregate.numpy(), x[f:].mean(0), atol=TOL)


def test_client_masking_another_vector_fails_the_link_check() -> None:
    proto = SecAggNormBound(bound=BOUND, frac_bits=FRAC, blame=False)  # blame: test_normbound_blame.py
    x = torch.tensor(_honest(3, 4, seed=2), dtype=torch.float32)
    q1 = encode_within_bound(proto.config, x[1].numpy().astype(np.float64), 3)
    sneaky = q1.copy()
    # Two units in one coordinate. Encoding rounds stochastically, so the vector client 1 commits to
    # in the round is a fresh draw within one unit of q1 per coordinate: q1 + 1 could equal it.
    sneaky[0] += 2
    with pytest.raises(LinkCheckFailed) as e:
        proto.run_round(x, mask_instead={1: sneaky})
    assert isinstance(e.value, ProtocolAbort)
    # a large substituted vector (what a scaling attacker would mask after an honest proof)
    with pytest.raises(LinkCheckFailed):
        proto.run_round(x, mask_instead={0: 100 * q1})


@pytest.mark.slow
@pytest.mark.parametrize(("seed", "dropped"), [(4, 3), (1, 2)])  # seeds: one client drops before masking
def test_dropouts_keep_the_link_check_consistent(seed: int, dropped: int) -> None:
    proto = SecAggNormBound(bound=BOUND, frac_bits=FRAC, dropout=0.3)
    x = _honest(6, 3, seed=3)
    res = proto.run(torch.tensor(x, dtype=torch.float32), rng=np.random.default_rng(seed))
    assert res.leakage.learns["server"]["dropped"] == [dropped]
    surv = [i for i in range(6) if i != dropped]
    assert res.accepted == surv
    np.testing.assert_allclose(res.aggregate.numpy(), x[surv].mean(0), atol=TOL)


@pytest.mark.slow
def test_probabilistic_checking() -> None:
    proto = SecAggNormBound(bound=BOUND, frac_bits=FRAC, verify_fraction=0.5)
    x = _honest(4, 3, seed=4)
    x[0] *= 5  # a cheater; caught only if sampled
    caught = 0
    for _ in range(2):
        res = proto.run(torch.tensor(x, dtype=torch.float32))
        server = res.leakage.learns["server"]
        assert len(server["unverified"]) == 2 and len(server["within_bound"]) + len(server["rejected"]) == 2
        if 0 in server["unverified"]:
            assert 0 in res.accepted  # unverified: it enters the aggregate (the documented trade-off)
        else:
            caught += 1
            assert 0 not in res.accepted
    assert detection_probability(10, 5, 1) == pytest.approx(0.5)
    assert detection_probability(4, 2, 2) == pytest.approx(1 - 1 / 6)
    assert detection_probability(10, 10, 1) == 1.0 and detection_probability(10, 0, 3) == 0.0
    with pytest.raises(SecAggError):
        detection_probability(3, 4, 1)


def test_too_few_accepted_clients() -> None:
    x = _honest(3, 3, seed=5)
    x[:2] *= 10
    with pytest.raises(ProtocolAbort, match="want >= 2"):
        SecAggNormBound(bound=BOUND, frac_bits=FRAC).run(torch.tensor(x, dtype=torch.float32))


def test_server_rejects_malformed_commitment_messages() -> None:
    params = NormBoundParams(d=2, entry_bits=4, bound=10)
    server = NormBoundServer(params, b"s" * 16, 0)
    assert not server.receive(0, b"short")
    small_order = bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")
    assert not server.receive(1, small_order + bytes(params.proof_size))
    assert server.rejected[0].startswith("MalformedProof") and "invalid point" in server.rejected[1]


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(0, L - 1), min_size=1, max_size=8), st.integers(8, 32))
def test_blinding_limbs_sum_exactly(rs: list[int], w: int) -> None:
    sums = np.sum([blinding_limbs(r, w).astype(object) for r in rs], axis=0)
    assert blinding_from_limb_sums(sums, w) == sum(rs) % L


def test_encoding_keeps_honest_updates_within_the_bound() -> None:
    cfg = NormBoundConfig(bound=BOUND, frac_bits=4)  # coarse scale: rounding often overshoots
    u = np.full(50, BOUND / np.sqrt(50))  # exactly at the bound
    for _ in range(10):
        q = encode_within_bound(cfg, u, 4)
        assert int(q @ q) <= cfg.int_bound
    assert cfg.entry_bits == 6 and cfg.int_bound == 256


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        ({"bound": 0.0}, "bound: got 0.0"),
        ({"bound": float("inf")}, "bound: got inf"),
        ({"bound": 1.0, "clip": -1.0}, "clip: got -1.0"),
        ({"bound": 1.0, "frac_bits": 30}, "frac_bits: got 30"),
        ({"bound": 1.0, "bits": 8}, "bits: got 8"),
        ({"bound": 1.0, "verify_fraction": 0.0}, "verify_fraction: got 0.0"),
        ({"bound": 1.0, "dropout": 1.0}, "dropout: got 1.0"),
        ({"bound": 1.0, "t": 0}, "t: got 0"),
        ({"bound": 1e6, "frac_bits": 24}, "want <= 32"),
    ],
)
def test_config_validation(kwargs: dict[str, float], msg: str) -> None:
    with pytest.raises(SecAggError, match=msg):
        NormBoundConfig(**kwargs)  # type: ignore[arg-type]


def test_unknown_keyword_is_refused() -> None:
    with pytest.raises(TypeError):
        protocols.make("secagg_normbound", bound=1.0, f=3)
    with pytest.raises(SecAggError, match="got 16 for n=256; want >= 19"):
        NormBoundConfig(bound=1.0, bits=16).limb_bits(2**8)


@pytest.mark.slow
def test_simulation_rejects_the_attacker_before_the_model() -> None:
    """End to end through fedsec.run: a scaling attacker's rows never enter the aggregate (detection
    rate 1), every honest client is accepted (false-positive rate 0). LargeNorm is covered above."""
    import fedsec
    from fedsec.config import Config

    cfg = Config.from_dict(
        {
            "data": {
                "dataset": "synthetic",
                "n_clients": 4,
                "min_samples": 8,
                "options": {"n_samples": 200, "n_features": 4, "n_classes": 2},
            },
            "model": {"name": "logreg"},
            "train": {"rounds": 1, "batch_size": 16},
            "attack": {"name": "scaling", "f": 1, "strength": 100.0},
            "eval": {"every": 1},
            "protocol": {"name": "secagg_normbound", "kwargs": {"bound": 20.0, "frac_bits": 2}},
            "defense": [{"rule": "mean"}],
        }
    )
    summary = fedsec.run(cfg, write=False).units[0].summary
    assert summary["protocol"] == "secagg_normbound"
    assert summary["byz_detection_tpr"] == 1.0
    assert summary["byz_detection_fpr"] == 0.0
    assert not summary["diverged"]


def test_proofs_in_a_process_pool_give_the_same_round() -> None:
    """workers=2: the clients' commitments and proofs come from worker processes; the server still
    rejects the scaled client, and the link check (which needs each client's blinding r back from its
    worker) passes for the others."""
    n, d = 4, 5
    x = _honest(n, d, seed=3)
    stack = torch.tensor(x, dtype=torch.float32)
    stack[0] *= 10.0
    proto = SecAggNormBound(bound=BOUND, frac_bits=FRAC, workers=2)
    res = proto.run(stack)
    assert res.accepted == [1, 2, 3] and sorted(proto.last_rejected) == [0]
    np.testing.assert_allclose(res.aggregate.numpy(), x[1:].mean(0), atol=TOL)
    assert res.meter.costs[("client[1]", "commit_prove")].seconds > 0
    with pytest.raises(SecAggError, match="workers: got 0"):
        NormBoundConfig(bound=1.0, workers=0)
