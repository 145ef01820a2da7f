"""The packed fixed-point Paillier baseline: packing, correctness at the carry limits, faults, leakage."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import protocols
from protocols.ckks.messages import Kind, decode_frame, unsigned_frame
from protocols.paillier_mean import (
    PaillierMean,
    PaillierParameterError,
    PaillierParams,
    describe,
    pack,
    unpack,
)
from secagg.errors import AuthenticationError, EncodingError, MalformedMessage

X = np.random.default_rng(7).uniform(-1.0, 1.0, size=(4, 60))


@pytest.fixture(scope="module")
def proto() -> PaillierMean:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # 1024-bit test key, warned about below
        p = protocols.make("paillier_mean", key_bits=1024)
    assert isinstance(p, PaillierMean)
    return p


def test_pack_known_answer() -> None:
    assert pack(np.array([1, 2, 3], dtype=np.uint64), w=4, s=2) == [1 | (2 << 4), 3]
    assert unpack([33, 3], w=4, s=2, d=3).tolist() == [1, 2, 3]


@given(
    w=st.integers(2, 70),
    s=st.integers(1, 9),
    data=st.data(),
)
def test_pack_round_trip(w: int, s: int, data: st.DataObject) -> None:
    words = data.draw(st.lists(st.integers(0, min(2**w, 2**64) - 1), min_size=1, max_size=30))
    arr = np.array(words, dtype=np.uint64)
    ints = pack(arr, w, s)
    assert len(ints) == -(-len(words) // s) and all(p < 2 ** (w * s) for p in ints)
    assert unpack(ints, w, s, len(words)).tolist() == words


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"key_bits": 1000}, "key_bits=1000"),
        ({"key_bits": 768}, "key_bits=768"),
        ({"ring_bits": 4}, "ring_bits=4"),
        ({"ring_bits": 63}, "ring_bits=63"),
        ({"value_range": -1.0}, "value_range=-1.0"),
    ],
)
def test_invalid_params(kw: dict, needle: str) -> None:
    with pytest.raises(PaillierParameterError, match="got") as e:
        PaillierParams(**kw)
    assert needle in str(e.value)


def test_weak_key_warns_loudly() -> None:
    with pytest.warns(UserWarning, match="below 2048 bits"):
        PaillierParams(key_bits=1024)


def test_packing_figures() -> None:
    p = PaillierParams()
    assert p.slot_bits(25) == 37 and p.per_plaintext(25) == 55
    assert describe(p, 25, 61_706) == {"per_plaintext": 55, "ciphertexts": 1122, "bytes": 1122 * 512}


def test_mean_matches_numpy(proto: PaillierMean) -> None:
    res = proto.run(X)
    scale_bits = proto.params.encoding().scale_bits(4)
    np.testing.assert_allclose(res.aggregate.double().numpy(), X.mean(0), atol=2.0**-scale_bits + 1e-7)
    assert res.accepted == list(range(4))


@pytest.mark.parametrize("value", [1.0, -1.0])
def test_no_carry_at_the_range_limits(proto: PaillierMean, value: float) -> None:
    # Every slot at its largest (or two's-complement largest) word: the case where carries would show.
    x = np.full((4, 60), value)
    x[2, ::2] = -value
    res = proto.run(x)
    np.testing.assert_allclose(res.aggregate.double().numpy(), x.mean(0), atol=1e-6)


def test_out_of_range_update_refused(proto: PaillierMean) -> None:
    x = X.copy()
    x[1, 3] = 1.25
    with pytest.raises(EncodingError, match=r"client\[1\]: got max \|x\| = 1.25; want <= value_range = 1.0"):
        proto.run(x)


def _tamper(proto: PaillierMean, mutate: Callable[[bytes], bytes]) -> None:
    original = proto._send

    def send(sender: str, receiver: str, phase: str, payload: bytes) -> bytes:
        out = original(sender, receiver, phase, payload)
        return mutate(out) if (sender, phase) == ("client[3]", "upload") else out

    proto._send = send  # type: ignore[method-assign]
    try:
        proto.run(X)
    finally:
        del proto._send


def test_tampered_ciphertext_is_rejected(proto: PaillierMean) -> None:
    def flip(b: bytes) -> bytes:
        a = bytearray(b)
        a[-5] ^= 0x10
        return bytes(a)

    with pytest.raises(AuthenticationError, match=r"client\[3\]"):
        _tamper(proto, flip)


def test_signed_out_of_group_ciphertext_is_malformed(proto: PaillierMean) -> None:
    if 3 not in proto.clients:  # run alone (or first on its worker): the setup round creates them
        proto.run(X)
    client = proto.clients[3]
    size = (client.pub.nsquare.bit_length() + 7) // 8
    count = -(-X.shape[1] // proto.params.per_plaintext(4))
    bad = [client.pub.nsquare.to_bytes(size + 1, "big")[-size:]] * count  # n^2 mod 2^(8 size)
    zero = [bytes(size)] * count

    for parts, needle in ((zero, "unit modulo n"), ([bytes(size)], "got 1 parts")):
        with pytest.raises(MalformedMessage, match=needle):
            _tamper(proto, lambda b, parts=parts: client.identity.seal(Kind.PAILLIER_UPDATE, parts))
    with pytest.raises(MalformedMessage):
        _tamper(proto, lambda b: client.identity.seal(Kind.PAILLIER_UPDATE, bad))


def test_transcripts_match_declared_leakage(proto: PaillierMean) -> None:
    res = proto.run(X)
    kh = proto.key_holder
    assert kh is not None
    to_kh = [m for m in proto.transcript if m.receiver == "key_holder" and m.phase != "setup"]
    assert len(to_kh) == 1  # one message: the aggregate ciphertexts, never a client's
    parts = decode_frame(unsigned_frame(to_kh[0].payload), Kind.PAILLIER_SUM)
    p = proto.params
    ints = [kh._priv.raw_decrypt(int.from_bytes(c, "big")) for c in parts]
    slots = unpack(ints, p.slot_bits(4), p.per_plaintext(4), X.shape[1])
    ring = np.array([v & ((1 << p.ring_bits) - 1) for v in slots], dtype=np.uint64)
    decoded = p.encoding().decode_sum(ring, n_summands=4)
    np.testing.assert_array_equal(decoded, res.leakage.learns["key_holder"]["aggregate"].numpy())
    np.testing.assert_allclose(decoded, X.sum(0), atol=1e-5)
    kinds = {
        decode_frame(unsigned_frame(m.payload), Kind(unsigned_frame(m.payload)[5]))
        and Kind(unsigned_frame(m.payload)[5])
        for m in proto.transcript
        if m.receiver == "server" and m.phase != "setup"
    }
    assert kinds == {Kind.PAILLIER_UPDATE, Kind.PLAINTEXT}
    up = res.meter.total("client", "upload").bytes_sent
    assert up == sum(len(m.payload) for m in proto.transcript if m.phase == "upload")


def test_key_size_message_states_what_is_accepted() -> None:
    """1024 bits is accepted (with a warning), so the refusal must not claim ">= 2048"."""
    with pytest.raises(
        PaillierParameterError, match=r"want a multiple of 256, >= 1024 \(>= 2048 outside tests\)"
    ):
        PaillierParams(key_bits=768)
