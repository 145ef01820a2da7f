"""Byzantine clients against the CKKS rules and the Paillier mean, played with the real parties.

The Byzantine client skips its own range check and encrypts whatever it likes under the public context
it was given (or under a foreign key), signs it with its own identity and uploads it. The contract
(issue 14): the round either ends in :class:`ByzantineInputError` (naming the client, or no one when the
value that left its range is a sum over clients), or it completes with the client excluded and the
aggregate equal to the plaintext rule on the honest rows (each excluded client counting against f).
Never a silently wrong aggregate.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import tenseal as ts
import torch

import protocols
import robust
from protocols.ckks import ByzantineInputError, CKKSRound, MalformedUpload
from protocols.ckks.driver import Message
from protocols.ckks.messages import Identity, Kind
from protocols.ckks.parties import chunk_rows
from protocols.paillier_mean import PaillierMean, pack

N, D, BYZ, CLIP = 7, 40, 6, 0.5
_rng = np.random.default_rng(11)
HONEST = np.clip(0.05 + 0.02 * _rng.standard_normal((N - 1, D)), -1.0, 1.0)
HONEST[:, 0] = 0.3 + 0.01 * _rng.standard_normal(N - 1)  # positive: a wrap of coordinate 0 reads negative
STACK = np.vstack([HONEST, np.zeros((1, D))])  # row BYZ is replaced in flight


def clip_mean(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1)
    return (x * np.minimum(1.0, CLIP / norms)[:, None]).mean(axis=0)


def rule(name: str, **kw: Any) -> Callable[[np.ndarray], np.ndarray]:
    agg = robust.make(name, **kw)
    return lambda x: agg(torch.as_tensor(x, dtype=torch.float64)).numpy()


# name -> (protocol kwargs, the plaintext rule on the honest rows once the Byzantine one is excluded)
RULES: dict[str, tuple[dict[str, Any], Callable[[np.ndarray], np.ndarray] | None]] = {
    "ckks_mean": ({}, None),  # nothing per client is decrypted: the mean can only refuse, never exclude
    "ckks_norm_clip": ({"clip": CLIP}, clip_mean),
    "ckks_krum": ({"f": 1}, rule("krum", f=0)),
    "ckks_multi_krum": ({"f": 1}, rule("multi_krum", f=0)),
    "ckks_median": ({}, rule("median")),
    "ckks_trimmed_mean": ({"f": 1}, rule("trimmed_mean", f=0)),
}


def _foreign_context() -> Any:
    ctx = ts.context(ts.SCHEME_TYPE.CKKS, 8192, coeff_mod_bit_sizes=[60, 40, 60])
    ctx.global_scale = 2.0**40
    return ctx


FOREIGN = _foreign_context()


def _encrypt(ctx: Any, v: np.ndarray, slots: int) -> list[bytes]:
    return [ts.ckks_vector(ctx, c).serialize() for c in chunk_rows(v, slots)]


def _wrap_row(d: int) -> np.ndarray:
    v = np.zeros(d)
    v[0] = math.sqrt(2.0**20 + 0.25)  # ||v||^2 = 2^20 + 0.25 reads as 0.25 modulo q_0 / 2^40
    return v


# attack name -> parts the Byzantine client signs, given its public context and the dimension
ATTACKS: dict[str, Callable[[Any, int, int], list[bytes]]] = {
    "huge_1e3": lambda ctx, d, s: _encrypt(ctx, np.full(d, 1e3), s),
    "huge_2^30": lambda ctx, d, s: _encrypt(ctx, np.full(d, 2.0**30), s),
    "wrap_q0": lambda ctx, d, s: _encrypt(ctx, _wrap_row(d), s),
    "foreign_key": lambda ctx, d, s: _encrypt(FOREIGN, np.full(d, 0.05), s),
    # TenSEAL refuses to encode NaN or inf; the closest a client gets is the largest encodable value.
    "max_encodable_2^58": lambda ctx, d, s: _encrypt(ctx, np.full(d, 2.0**58), s),
    "one_huge_coordinate": lambda ctx, d, s: _encrypt(ctx, np.r_[5e4, np.full(d - 1, 0.05)], s),
}


@pytest.fixture(scope="module")
def protos() -> dict[str, CKKSRound]:
    out = {}
    for name, (kw, _) in RULES.items():
        proto = protocols.make(name, **kw)
        proto.run(STACK)  # setup and a clean round first
        out[name] = proto
    return out


def byzantine_round(proto: CKKSRound, parts_of: Callable[[Any, int, int], list[bytes]], x: np.ndarray) -> Any:
    client = proto.clients[BYZ]

    def hook(m: Message) -> bytes:
        if m.phase == "upload" and m.sender == f"client[{BYZ}]":
            return client.identity.seal(Kind.UPDATE, parts_of(client._ctx, x.shape[1], proto.params.slots))
        return m.payload

    proto.intercept = hook
    try:
        return proto.run(x)
    finally:
        proto.intercept = None


def assert_contract(name: str, proto: CKKSRound, run: Callable[[], Any], honest: np.ndarray) -> None:
    try:
        res = run()
    except ByzantineInputError as e:
        assert e.culprits in ((), (BYZ,)), f"named {e.culprits}; want client {BYZ} or no one"
        return
    ref = RULES[name][1]
    assert ref is not None, f"{name} completed a round with a Byzantine input: {res.aggregate[:4]}"
    assert BYZ not in res.accepted and proto.excluded == [BYZ]
    np.testing.assert_allclose(res.aggregate.double().numpy(), ref(honest), atol=1e-4)


@pytest.mark.parametrize("attack", sorted(ATTACKS))
@pytest.mark.parametrize("name", sorted(RULES))
def test_byzantine_ciphertext_is_excluded_or_refused(name: str, attack: str, protos: dict) -> None:
    proto = protos[name]
    assert_contract(name, proto, lambda: byzantine_round(proto, ATTACKS[attack], STACK), HONEST)


@pytest.mark.parametrize("name", sorted(RULES))
def test_truncated_upload_names_its_client(name: str, protos: dict) -> None:
    proto = protos[name]
    with pytest.raises(MalformedUpload, match=rf"client\[{BYZ}\]") as e:
        byzantine_round(proto, lambda ctx, d, s: [], STACK)
    assert e.value.culprits == (BYZ,)


@pytest.mark.parametrize("name", sorted(RULES))
def test_reordered_chunks_are_the_clients_own_in_range_update(name: str, protos: dict) -> None:
    """Two chunks swapped by the Byzantine client: an update in range, which the rule treats as the
    client's (its permuted row); the output is the plaintext rule on the rows as sent."""
    proto = protos[name]
    slots = proto.params.slots
    d = slots + 40
    rng = np.random.default_rng(5)
    x = np.clip(0.05 + 0.02 * rng.standard_normal((N, d)), -1, 1)
    x[BYZ, 40:slots] = 0.0  # so that chunk 0, moved to the padded position, pads with zeros
    sent = np.r_[x[BYZ, slots:], np.zeros(slots - 40), x[BYZ, :40]]  # chunk 1, then chunk 0
    swapped = sent[:d].copy()

    def parts(ctx: Any, d_: int, s: int) -> list[bytes]:
        return list(reversed(_encrypt(ctx, x[BYZ], s)))

    res = byzantine_round(proto, parts, x)
    rows = x.copy()
    rows[BYZ] = swapped
    kw, ref = RULES[name]
    f = kw.get("f", 0)
    plain = {
        "ckks_mean": rule("mean"),
        "ckks_norm_clip": clip_mean,
        "ckks_krum": rule("krum", f=f),
        "ckks_multi_krum": rule("multi_krum", f=f),
        "ckks_median": rule("median"),
        "ckks_trimmed_mean": rule("trimmed_mean", f=f),
    }[name]
    np.testing.assert_allclose(res.aggregate.double().numpy(), plain(rows), atol=1e-4)
    assert ref is None or proto.excluded == []


def test_norm_clip_wrap_is_refused_at_the_aggregate(protos: dict) -> None:
    """The crafted wrap passes the squared-norm check (it reads 0.25); the aggregate's norm does not."""
    proto = protos["ckks_norm_clip"]
    with pytest.raises(ByzantineInputError, match="L2 norm") as e:
        byzantine_round(proto, ATTACKS["wrap_q0"], STACK)
    assert e.value.culprits == ()  # the norm the key holder decrypted was in range: no one to name
    honest = proto.run(STACK)  # and the record says what is and is not enforced
    assert "NOT per client" in honest.leakage.learns["key_holder"]["clip_enforced"]


# ------------------------------------------------------------------------------- median collusion
def test_median_leakage_record_covers_key_holder_plus_one_client() -> None:
    """Key holder and client 0 collude: from the blinded matrix, client 0's row and the aggregate they
    solve each column's map ``y = a x + b`` and recover every other client's values. The record must
    say so (and state the non-collusion assumption that excludes it)."""
    n, d = 9, 300
    x = np.random.default_rng(4).uniform(-0.5, 0.5, size=(n, d))
    proto = protocols.make("ckks_median")
    res = proto.run(x)
    kh = res.leakage.learns["key_holder"]
    y, ranks = kh["blinded_updates"].numpy(), kh["ranks"].numpy()
    agg = res.aggregate.double().numpy()
    med = np.argmax(ranks == n // 2, axis=0)  # the client holding the median rank, per column
    usable = med != 0
    cols = np.flatnonzero(usable)
    a = (y[med[cols], cols] - y[0, cols]) / (agg[cols] - x[0, cols])
    b = y[0, cols] - a * x[0, cols]
    recovered = (y[:, cols] - b) / a
    ok = np.abs(recovered - x[:, cols]).max(axis=0) < 1e-3
    assert ok.sum() >= 0.8 * d  # nearly every column: all but those where client 0 holds the median
    record = kh["with_one_colluding_client"]
    assert "every client's value" in record and "non-collusion" in record


# ------------------------------------------------------------------------------- Paillier
@pytest.fixture(scope="module")
def paillier() -> PaillierMean:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # 1024-bit test key
        p = protocols.make("paillier_mean", key_bits=1024)
    assert isinstance(p, PaillierMean)
    p.run(HONEST)
    return p


def _paillier_attack(kind: str) -> Callable[[PaillierMean, int], list[int]]:
    def plaintexts(p: PaillierMean, n: int) -> list[int]:
        prm = p.params
        w, s = prm.slot_bits(n), prm.per_plaintext(n)
        count = -(-D // s)
        pub = p.clients[0].pub
        if kind == "carry":  # every slot's word at 2^w - 1: carries into the next slot
            return pack(np.full(D, (1 << w) - 1, dtype=object), w, s)
        if kind == "ring_max":  # the ring's largest magnitude in every slot
            return pack(np.full(D, 1 << (prm.ring_bits - 1), dtype=np.uint64), w, s)
        rng = np.random.default_rng(3)
        return [int.from_bytes(rng.bytes(128), "big") % pub.n for _ in range(count)]

    return plaintexts


@pytest.mark.parametrize("kind", ["carry", "ring_max", "random_plaintext", "foreign_key"])
def test_paillier_byzantine_plaintext_is_refused_or_bounded(kind: str, paillier: PaillierMean) -> None:
    """The key holder sees only the sum: it refuses any sum honest inputs cannot give; what it cannot
    refuse stays within the mean's range ``[-B, B]`` (the bound the module docstring states)."""
    n = len(HONEST)
    byz = n - 1
    client = paillier.clients[byz]
    size = (client.pub.nsquare.bit_length() + 7) // 8

    def hook(m: Message) -> bytes:
        if m.phase == "upload" and m.sender == f"client[{byz}]":
            if kind == "foreign_key":
                other = paillier_other_key()
                ms = _paillier_attack("ring_max")(paillier, n)
                cts = [other.raw_encrypt(v % other.n) % client.pub.nsquare for v in ms]
            else:
                cts = [client.pub.raw_encrypt(v) for v in _paillier_attack(kind)(paillier, n)]
            return client.identity.seal(Kind.PAILLIER_UPDATE, [c.to_bytes(size, "big") for c in cts])
        return m.payload

    paillier.intercept = hook
    try:
        res = paillier.run(HONEST)
    except ByzantineInputError as e:
        assert e.culprits == ()
        return
    finally:
        paillier.intercept = None
    assert np.abs(res.aggregate.double().numpy()).max() <= paillier.params.value_range * (1 + 1e-6)


def paillier_other_key() -> Any:
    from phe import paillier as phe

    pub, _ = phe.generate_paillier_keypair(n_length=1024)
    return pub


def test_paillier_server_verifies_the_reply_with_the_key_it_was_sent(paillier: PaillierMean) -> None:
    """Swapping the key holder object's identity after setup must not make the server accept a reply
    signed by the new key: the server holds the verify key it was sent at setup."""
    from secagg.errors import AuthenticationError

    kh = paillier.key_holder
    assert kh is not None
    original = kh.identity
    kh.identity = Identity.generate("key_holder")
    try:
        with pytest.raises(AuthenticationError, match="key_holder"):
            paillier.run(HONEST)
    finally:
        kh.identity = original


def test_run_reports_say_the_norm_clip_is_not_enforced_per_byzantine_client() -> None:
    from fedsec.config import Config
    from fedsec.simulation import threat_model

    cfg = Config.from_dict({"protocol": {"name": "ckks_norm_clip", "kwargs": {"clip": 1.0}}})
    assert "not enforced per Byzantine client" in threat_model(cfg, None)["secure_aggregation"]
