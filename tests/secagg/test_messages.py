"""Wire format: round trips and strict rejection of every malformed field (known bad vectors)."""

from __future__ import annotations

import pytest

from secagg import AuthenticationError, MalformedMessage, keys
from secagg import messages as m

SESSION = bytes(range(16))


@pytest.fixture(scope="module")
def signer() -> keys.Signer:
    return keys.Signer()


def _unpack(data: bytes, signer: keys.Signer, receiver: int = m.SERVER) -> m.Envelope:
    return m.unpack(
        data,
        session=SESSION,
        receiver=receiver,
        verify_key_of=lambda s: signer.verify_key if s == 3 else None,
    )


def test_envelope_round_trip_and_layout(signer: keys.Signer) -> None:
    env = m.Envelope(m.Kind.MASKED, SESSION, 3, m.SERVER, b"\x01\x02\x03")
    data = m.pack(env, signer)
    assert len(data) == m.ENVELOPE_OVERHEAD + 3 == 32 + 3 + 64
    assert data[:4] == b"SA\x01\x05" and data[4:20] == SESSION
    assert data[20:24] == (3).to_bytes(4, "little") and data[28:32] == (3).to_bytes(4, "little")
    assert _unpack(data, signer) == env
    assert m.peek(data) == (m.Kind.MASKED, 3)


@pytest.mark.parametrize(
    ("offset", "value", "error", "match"),
    [
        (0, b"XA", MalformedMessage, "magic"),
        (2, b"\x02", MalformedMessage, "version: got 2; want 1"),
        (3, b"\x63", MalformedMessage, "message kind: got 99"),
        (4, b"\xff", MalformedMessage, "session"),
        (20, b"\x04", MalformedMessage, "sender: got unknown id 4"),
        (24, b"\x00", MalformedMessage, "receiver"),
        (28, b"\x09", MalformedMessage, "message length"),
        (33, b"\xaa", AuthenticationError, "signature"),
        (40, b"\x00", AuthenticationError, "signature"),
    ],
)
def test_bad_envelopes_are_rejected(
    signer: keys.Signer, offset: int, value: bytes, error: type, match: str
) -> None:
    data = bytearray(m.pack(m.Envelope(m.Kind.MASKED, SESSION, 3, m.SERVER, b"\x01\x02\x03"), signer))
    data[offset : offset + len(value)] = value
    with pytest.raises(error, match=match):
        _unpack(bytes(data), signer)


def test_truncated_and_extended_messages(signer: keys.Signer) -> None:
    data = m.pack(m.Envelope(m.Kind.MASKED, SESSION, 3, m.SERVER, b"abc"), signer)
    with pytest.raises(MalformedMessage, match="message length"):
        _unpack(data + b"\x00", signer)
    with pytest.raises(MalformedMessage):
        _unpack(data[:-1], signer)
    with pytest.raises(MalformedMessage, match="want at least 96"):
        _unpack(data[:50], signer)


def test_broadcast_receiver_is_accepted(signer: keys.Signer) -> None:
    data = m.pack(m.Envelope(m.Kind.KEYS, SESSION, 3, m.ANY, b""), signer)
    assert _unpack(data, signer, receiver=7).receiver == m.ANY


def test_bodies_round_trip() -> None:
    ct = bytes(m.CT_BYTES)
    assert m.decode_shares(m.encode_shares(b"c" * 32, [(1, ct), (4, ct)]), 8) == (
        b"c" * 32,
        [(1, ct), (4, ct)],
    )
    assert m.decode_ciphertexts(m.encode_ciphertexts([(0, ct)]), 8) == [(0, ct)]
    assert m.decode_ids(m.encode_ids([0, 2, 5]), 8) == [0, 2, 5]
    req = m.decode_unmask_request(m.encode_unmask_request([1, 2], [(1, b"s" * 64)]), 8)
    assert req == ([1, 2], [(1, b"s" * 64)])
    ent = [(0, m.What.SELF_SEED, bytes(33)), (3, m.What.MASK_KEY, bytes(33))]
    assert m.decode_unmask(m.encode_unmask(ent), 8) == ent
    kk = [(2, b"a" * 32, b"b" * 32, b"s" * 64)]
    assert m.decode_keys(m.encode_keys(kk), 8) == kk


@pytest.mark.parametrize(
    ("decode", "body", "match"),
    [
        (lambda b: m.decode_ids(b, 8), m.encode_ids([2, 1]), "strictly increasing"),
        (lambda b: m.decode_ids(b, 8), m.encode_ids([1, 1]), "strictly increasing"),
        (lambda b: m.decode_ids(b, 8), m.encode_ids([1]) + b"\x00", "trailing"),
        (lambda b: m.decode_ids(b, 2), m.encode_ids([0, 1, 2]), "got count 3"),
        (lambda b: m.decode_ids(b, 8), (5).to_bytes(4, "little"), "got count 5"),
        (lambda b: m.decode_unmask(b, 8), m.encode_ids([1]) + b"\x02" + bytes(33), "got 2"),
        (lambda b: m.decode_advertise(b), bytes(127), "want at least 128"),
        (lambda b: m.decode_shares(b, 8), bytes(31), "want at least 32"),
    ],
)
def test_bad_bodies_are_rejected(decode, body: bytes, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(MalformedMessage, match=match):
        decode(body)
