"""Prio3 byte-exact against draft-irtf-cfrg-vdaf-20's test vectors (tests/secagg/vdaf_vectors), the
``*_bad_*`` vectors rejected at the step they name, and tampered reports rejected."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from secagg.vdaf.errors import VdafDecodeError, VdafVerifyError
from secagg.vdaf.prio3 import (
    Prio3,
    VerifierShare,
    VerifyState,
    prio3_count,
    prio3_sum,
    prio3_sum_vec,
    prio3_sum_vec_multiproof,
)

VECTORS = Path(__file__).parent / "vdaf_vectors"


def _instance(name: str, v: dict[str, Any]) -> Prio3:
    kind = name.split("_")[0]
    if kind == "Prio3Count":
        return prio3_count(v["shares"])
    if kind == "Prio3Sum":
        return prio3_sum(v["max_measurement"], v["shares"])
    if kind == "Prio3SumVec":
        return prio3_sum_vec(v["length"], v["max_measurement"], v["chunk_length"], v["shares"])
    assert kind == "Prio3SumVecWithMultiproof"
    return prio3_sum_vec_multiproof(v["length"], v["max_measurement"], v["chunk_length"], 3, v["shares"])


def _files(good: bool) -> list[str]:
    names = sorted(p.stem for p in VECTORS.glob("Prio3*.json"))
    return [n for n in names if ("_bad_" in n) != good]


def _run(name: str) -> None:
    """Replay the vector's operations; every output must equal the vector's bytes."""
    v = json.loads((VECTORS / f"{name}.json").read_text())
    vdaf = _instance(name, v)
    ctx, key = bytes.fromhex(v["ctx"]), bytes.fromhex(v["verify_key"])
    states: dict[tuple[int, int], VerifyState] = {}
    vshares: dict[tuple[int, int], VerifierShare] = {}
    outs: dict[tuple[int, int], Any] = {}
    for op in v["operations"]:
        r = op.get("report_index", 0)
        rep = v["reports"][r]
        nonce = bytes.fromhex(rep["nonce"])
        ok = op["success"]
        kind = op["operation"]
        try:
            if kind == "shard":
                public, shares = vdaf.shard(ctx, rep["measurement"], nonce, bytes.fromhex(rep["rand"]))
                assert vdaf.encode_public_share(public).hex() == rep["public_share"]
                assert [vdaf.encode_input_share(s).hex() for s in shares] == rep["input_shares"]
            elif kind == "verify_init":
                j = op["aggregator_id"]
                public = vdaf.decode_public_share(bytes.fromhex(rep["public_share"]))
                share = vdaf.decode_input_share(j, bytes.fromhex(rep["input_shares"][j]))
                state, vs = vdaf.verify_init(key, ctx, j, nonce, public, share)
                assert vdaf.encode_verifier_share(vs).hex() == rep["verifier_shares"][0][j]
                states[(r, j)], vshares[(r, j)] = state, vs
            elif kind == "verifier_shares_to_message":
                got = [vshares[(r, j)] for j in range(vdaf.SHARES)]
                msg = vdaf.verifier_shares_to_message(ctx, got)
                assert (msg or b"").hex() == rep["verifier_messages"][0]
            elif kind == "verify_next":
                j = op["aggregator_id"]
                msg_hex = rep["verifier_messages"][0]
                out = vdaf.verify_next(states[(r, j)], bytes.fromhex(msg_hex) if vdaf.uses_jr else None)
                assert vdaf.field.encode_vec(out).hex() == rep["out_shares"][j]
                outs[(r, j)] = out
            elif kind == "aggregate":
                j = op["aggregator_id"]
                agg = vdaf.aggregate([outs[(i, j)] for i in range(len(v["reports"])) if (i, j) in outs])
                assert vdaf.encode_agg_share(agg).hex() == v["agg_shares"][j]
            elif kind == "unshard":
                aggs = [vdaf.field.decode_vec(bytes.fromhex(a)) for a in v["agg_shares"]]
                assert vdaf.unshard(aggs, len(v["reports"])) == v["agg_result"]
            else:
                raise AssertionError(f"unknown operation {kind}")
        except (VdafVerifyError, VdafDecodeError) as err:
            assert not ok, f"{name}: {kind} on report {r} failed: {err}"
            if isinstance(err, VdafVerifyError):
                assert err.step == kind
            return
        assert ok, f"{name}: {kind} on report {r} succeeded; the vector wants it rejected"


@pytest.mark.parametrize("name", _files(good=True))
def test_prio3_matches_the_drafts_vector(name: str) -> None:
    _run(name)


@pytest.mark.parametrize("name", _files(good=False))
def test_prio3_rejects_the_drafts_bad_vector_at_its_step(name: str) -> None:
    _run(name)


def test_the_vectors_are_all_here() -> None:
    assert len(_files(good=True)) == 8 and len(_files(good=False)) == 4


def _accepts(vdaf: Prio3, key: bytes, ctx: bytes, nonce: bytes, public: bytes, shares: list[bytes]) -> bool:
    """Run both aggregators on the encoded report; False on any typed rejection."""
    try:
        pub = vdaf.decode_public_share(public)
        inits = [
            vdaf.verify_init(key, ctx, j, nonce, pub, vdaf.decode_input_share(j, s))
            for j, s in enumerate(shares)
        ]
        msg = vdaf.verifier_shares_to_message(ctx, [vs for _, vs in inits])
        for state, _ in inits:
            vdaf.verify_next(state, msg)
    except (VdafVerifyError, VdafDecodeError):
        return False
    return True


def _flip(data: bytes, bit: int) -> bytes:
    b = bytearray(data)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


@pytest.mark.parametrize(
    "name", ["Prio3Count_1", "Prio3Sum_1", "Prio3SumVec_0", "Prio3SumVecWithMultiproof_0"]
)
def test_any_single_flipped_bit_in_a_report_is_rejected(name: str) -> None:
    import random

    v = json.loads((VECTORS / f"{name}.json").read_text())
    vdaf = _instance(name, v)
    ctx, key = bytes.fromhex(v["ctx"]), bytes.fromhex(v["verify_key"])
    rep = v["reports"][0]
    nonce, public = bytes.fromhex(rep["nonce"]), bytes.fromhex(rep["public_share"])
    shares = [bytes.fromhex(s) for s in rep["input_shares"]]
    assert _accepts(vdaf, key, ctx, nonce, public, shares)
    rng = random.Random(name)
    parts = [public, *shares]
    for _ in range(24):
        which = rng.choice([i for i, p in enumerate(parts) if p])
        bit = rng.randrange(8 * len(parts[which]))
        tampered = list(parts)
        tampered[which] = _flip(parts[which], bit)
        assert not _accepts(vdaf, key, ctx, nonce, tampered[0], tampered[1:]), (which, bit)
    # the context always binds the shares; the nonce binds them only through the joint randomness
    # (without it a report stays valid under any nonce: refusing repeated nonces is the servers' job)
    assert _accepts(vdaf, key, ctx, _flip(nonce, 3), public, shares) is not vdaf.uses_jr
    assert not _accepts(vdaf, key, ctx + b"x", nonce, public, shares)


def test_cheating_clients_are_rejected_by_the_flp() -> None:
    """A client that proves an out-of-range value honestly (the FLP's job is to catch it)."""
    from secagg.vdaf.field import Field64

    vdaf = prio3_sum(100)
    key, ctx, nonce = bytes(range(32)), b"task", bytes(16)
    flp, f = vdaf.flp, vdaf.field
    bad = f.arr([1, 1, 1, 1, 1, 1, 2])  # a "bit" equal to 2
    proof = flp.prove(bad, f.arr([5]), f.zeros(0))
    helper = vdaf.helper_meas_share(ctx, 1, bytes(32))
    hproof = vdaf.helper_proofs_share(ctx, 1, bytes(32))
    from secagg.vdaf.prio3 import HelperShare, LeaderShare

    leader = LeaderShare(f.sub(bad, helper), f.sub(proof, hproof), None)
    s0 = vdaf.verify_init(key, ctx, 0, nonce, None, leader)[1]
    s1 = vdaf.verify_init(key, ctx, 1, nonce, None, HelperShare(bytes(32), None))[1]
    with pytest.raises(VdafVerifyError, match="proof 0 rejected") as err:
        vdaf.verifier_shares_to_message(ctx, [s0, s1])
    assert err.value.step == "verifier_shares_to_message"
    assert Field64 is f


@pytest.mark.parametrize("shares", [2, 3])
def test_round_trip_sums_random_reports(shares: int) -> None:
    import random

    rng = random.Random(7)
    vdaf = prio3_sum_vec(5, 7, 4, shares)
    key, ctx = bytes(32), b"ctx"
    measurements = [[rng.randrange(8) for _ in range(5)] for _ in range(4)]
    outs: list[list[Any]] = [[] for _ in range(shares)]
    for m in measurements:
        nonce, rand = rng.randbytes(16), rng.randbytes(vdaf.RAND_SIZE)
        public, shares = vdaf.shard(ctx, m, nonce, rand)
        inits = [vdaf.verify_init(key, ctx, j, nonce, public, s) for j, s in enumerate(shares)]
        msg = vdaf.verifier_shares_to_message(ctx, [vs for _, vs in inits])
        for j, (state, _) in enumerate(inits):
            outs[j].append(vdaf.verify_next(state, msg))
    aggs = [vdaf.aggregate(o) for o in outs]
    assert vdaf.unshard(aggs, 4) == [sum(col) for col in zip(*measurements)]


def test_bad_parameters_and_measurements_are_refused() -> None:
    from secagg.vdaf.errors import VdafMeasurementError, VdafParameterError

    with pytest.raises(VdafParameterError, match=">= 3 proofs"):
        prio3_sum_vec_multiproof(4, 1, 2, proofs=2)
    with pytest.raises(VdafMeasurementError, match="want"):
        prio3_sum(10).shard(b"", 11, bytes(16), bytes(64))
    with pytest.raises(VdafMeasurementError, match="0 or 1"):
        prio3_count().shard(b"", 2, bytes(16), bytes(64))
    with pytest.raises(VdafParameterError, match="nonce"):
        prio3_count().shard(b"", 1, bytes(15), bytes(64))
