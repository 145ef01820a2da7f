"""Wire-level failures of the CKKS protocols: framing, signatures, malformed and tampered ciphertexts.

Every case must end in a typed ``secagg.ProtocolAbort`` (or ``EncodingError`` at a client), never in
an aggregate.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import tenseal as ts
from hypothesis import given, settings
from hypothesis import strategies as st

import protocols
from protocols.base import RoundResult
from protocols.ckks import CKKSRound, Message
from protocols.ckks.messages import Identity, Kind, decode_frame, encode_frame, open_message, unsigned_frame
from protocols.ckks.parties import CKKSServer
from protocols.ckks.setup import SetupError, seal_setup
from secagg.errors import AuthenticationError, EncodingError, MalformedMessage, StageError

X = np.random.default_rng(3).uniform(-0.5, 0.5, size=(5, 100))

parts_st = st.lists(st.binary(max_size=40), max_size=6)


@given(parts=parts_st, kind=st.sampled_from(list(Kind)))
def test_frames_round_trip(parts: list[bytes], kind: Kind) -> None:
    assert decode_frame(encode_frame(kind, parts), kind, len(parts)) == parts


@given(parts=parts_st, data=st.data())
def test_truncated_or_padded_frames_are_malformed(parts: list[bytes], data: st.DataObject) -> None:
    frame = encode_frame(Kind.UPDATE, parts)
    cut = data.draw(st.integers(0, len(frame) - 1))
    with pytest.raises(MalformedMessage):
        decode_frame(frame[:cut], Kind.UPDATE)
    with pytest.raises(MalformedMessage, match="trailing"):
        decode_frame(frame + b"\x00", Kind.UPDATE)


def test_wrong_kind_count_magic() -> None:
    frame = encode_frame(Kind.DISTANCES, [b"a", b"b"])
    with pytest.raises(StageError, match="got a DISTANCES message; want AGGREGATE"):
        decode_frame(frame, Kind.AGGREGATE)
    with pytest.raises(MalformedMessage, match="got 2 parts"):
        decode_frame(frame, Kind.DISTANCES, 3)
    with pytest.raises(MalformedMessage, match="magic"):
        decode_frame(b"XXXX" + frame[4:], Kind.DISTANCES)


@settings(max_examples=30)
@given(pos=st.integers(0, 200), bit=st.integers(0, 7))
def test_any_flipped_bit_breaks_the_signature(pos: int, bit: int) -> None:
    ident = Identity.generate("server")
    msg = bytearray(ident.seal(Kind.SELECTION, [b"\x01" * 64, b"xyz"]))
    pos %= len(msg)
    msg[pos] ^= 1 << bit
    with pytest.raises(AuthenticationError, match="server"):
        open_message(bytes(msg), ident.verify_key, "server", Kind.SELECTION)


def test_identity_repr_hides_the_key() -> None:
    ident = Identity.generate("client[0]")
    assert repr(ident) == "Identity('client[0]')"


# ----------------------------------------------------------------------------------------------- rounds
@pytest.fixture(scope="module")
def krum() -> CKKSRound:
    proto = protocols.make("ckks_multi_krum", f=1)
    res = proto.run(X)  # a clean round first: the failures below are caused by the faults only
    assert res.accepted == sorted(res.accepted) and len(res.accepted) == 4
    return proto


def run_with(proto: CKKSRound, hook: Callable[[Message], bytes], x: np.ndarray = X) -> RoundResult:
    proto.intercept = hook
    try:
        return proto.run(x)
    finally:
        proto.intercept = None


Hook = Callable[[Message], bytes]


def replace(target: Callable[[Message], bool], payload: Hook) -> Hook:
    return lambda m: payload(m) if target(m) else m.payload


def is_upload(i: int) -> Callable[[Message], bool]:
    return lambda m: m.phase == "upload" and m.sender == f"client[{i}]"


def flip(data: bytes, pos: int) -> bytes:
    b = bytearray(data)
    b[pos] ^= 0x01
    return bytes(b)


def test_upload_tampered_in_flight(krum: CKKSRound) -> None:
    with pytest.raises(AuthenticationError, match=r"client\[2\]"):
        run_with(krum, replace(is_upload(2), lambda m: flip(m.payload, len(m.payload) // 2)))


def _resigned(proto: CKKSRound, i: int, parts: list[bytes]) -> Callable[[Message], bytes]:
    return lambda m: proto.clients[i].identity.seal(Kind.UPDATE, parts)


def test_signed_garbage_ciphertext_is_malformed(krum: CKKSRound) -> None:
    with pytest.raises(MalformedMessage, match=r"update of client\[1\]: ciphertext does not load"):
        run_with(krum, replace(is_upload(1), _resigned(krum, 1, [b"not a ciphertext"])))


def test_truncated_ciphertext_is_malformed(krum: CKKSRound) -> None:
    def truncate(m: Message) -> bytes:
        part = decode_frame(unsigned_frame(m.payload), Kind.UPDATE)[0]
        return krum.clients[0].identity.seal(Kind.UPDATE, [part[: len(part) - 100]])

    with pytest.raises(MalformedMessage, match="does not load"):
        run_with(krum, replace(is_upload(0), truncate))


def test_ciphertext_of_wrong_level_or_size_is_malformed(krum: CKKSRound) -> None:
    kh_ctx = krum.key_holder._ctx
    low = ts.ckks_vector_from(kh_ctx, ts.ckks_vector(kh_ctx, [0.1] * 4096).serialize()) * 2.0  # rescaled
    with pytest.raises(MalformedMessage, match="at 1 primes; want size 2 at 2 primes"):
        run_with(krum, replace(is_upload(3), _resigned(krum, 3, [low.serialize()])))
    short = ts.ckks_vector(kh_ctx, [0.1] * 10).serialize()
    with pytest.raises(MalformedMessage, match="of 10 slots; want 1 of 4096"):
        run_with(krum, replace(is_upload(3), _resigned(krum, 3, [short])))
    with pytest.raises(MalformedMessage, match="got 2 parts in a UPDATE message; want 1"):
        run_with(krum, replace(is_upload(3), _resigned(krum, 3, [short, short])))


def test_out_of_range_byzantine_ciphertext_is_excluded_by_key_holder(krum: CKKSRound) -> None:
    def huge(m: Message) -> bytes:
        ctx = krum.clients[4]._ctx  # the client's own public context, bypassing its range check
        return krum.clients[4].identity.seal(Kind.UPDATE, [ts.ckks_vector(ctx, [300.0] * 4096).serialize()])

    # Every distance to client 4 decrypts out of range: it is named and excluded, counting against f.
    res = run_with(krum, replace(is_upload(4), huge))
    assert krum.excluded == [4] and res.accepted == [0, 1, 2, 3]
    np.testing.assert_allclose(res.aggregate.double().numpy(), X[:4].mean(axis=0), atol=1e-5)


def test_replayed_server_message_of_the_wrong_stage(krum: CKKSRound) -> None:
    seen: dict[str, bytes] = {}

    def hook(m: Message) -> bytes:
        if m.sender == "server" and m.phase == "distances":
            seen["d"] = m.payload
        if m.sender == "server" and m.phase == "decrypt":
            return seen["d"]
        return m.payload

    with pytest.raises(StageError, match="got a DISTANCES message; want AGGREGATE"):
        run_with(krum, hook)


def test_forged_selection_is_rejected(krum: CKKSRound) -> None:
    forger = Identity.generate("key_holder")
    forged = forger.seal(Kind.SELECTION, [np.arange(4, dtype="<i8").tobytes()])
    with pytest.raises(AuthenticationError, match="key_holder"):
        run_with(krum, replace(lambda m: m.phase == "select", lambda m: forged))


def test_selection_out_of_bounds_is_malformed(krum: CKKSRound) -> None:
    def bad(m: Message) -> bytes:  # signed by the key holder in the current round
        return krum.key_holder.seal(Kind.SELECTION, [np.array([0, 1, 2, 9], dtype="<i8").tobytes()])

    with pytest.raises(MalformedMessage, match=r"got selection \[0, 1, 2, 9\]"):
        run_with(krum, replace(lambda m: m.phase == "select", bad))


def test_client_refuses_out_of_range_update(krum: CKKSRound) -> None:
    x = X.copy()
    x[2, 7] = 1.5
    with pytest.raises(EncodingError, match=r"client\[2\]: got max \|x\| = 1.5; want <= value_range = 1.0"):
        krum.run(x)


def test_server_refuses_a_context_with_the_secret_key(krum: CKKSRound) -> None:
    private = krum.key_holder._ctx.serialize(save_secret_key=True)
    kh = krum.key_holder
    signed = seal_setup(kh.identity, Kind.CONTEXT, private)
    with pytest.raises(SetupError, match="secret key"):
        CKKSServer(krum.params, signed, Identity.generate("server"), kh.identity.verify_key)


def test_message_replayed_from_an_earlier_round_is_refused(krum: CKKSRound) -> None:
    krum.run(X)  # a completed round whose messages are replayed below
    earlier = {(m.sender, m.phase): m.payload for m in krum.transcript}
    for key in (("server", "distances"), ("key_holder", "select"), ("client[1]", "upload")):
        hook = replace(lambda m, key=key: (m.sender, m.phase) == key, lambda m, key=key: earlier[key])
        with pytest.raises(StageError, match=r"of round \d+; want round \d+ \(a replay\?\)"):
            run_with(krum, hook)
