"""Versioned wire format of the masking protocol, with strict validation on decode.

Every message is a signed envelope::

    magic "SA" | version u8 | kind u8 | session 16B | sender u32 | receiver u32 | body_len u32
    | body | sig 64B

all integers little-endian; the server's id is :data:`SERVER`, a broadcast has receiver :data:`ANY`.
``sig`` is the sender's Ed25519 signature (over BLAKE2b-512 of everything before it, see
:mod:`secagg.keys`). Decoding checks, in order: length, magic, version, kind, session, receiver, that the
sender is known, the signature, and then the body layout of that kind exactly (counts, fixed sizes, ids
strictly increasing, no trailing bytes). Any failure raises :class:`secagg.MalformedMessage` or
:class:`secagg.AuthenticationError`; nothing is half-accepted.

Bodies (``ct`` is a share ciphertext of :data:`CT_BYTES`, ``share`` a field element of 33 bytes):

- ADVERTISE  c_pk 32 | s_pk 32 | key_sig 64 (the client's signature on session, id and both keys)
- KEYS       count u32 | count x (id u32 | c_pk | s_pk | key_sig)
- SHARES     commit_b 32 | count u32 | count x (to u32 | ct)
- CIPHERTEXTS count u32 | count x (from u32 | ct)
- MASKED     d words of the ring, little-endian (4 bytes each for bits <= 32, else 8)
- SURVIVORS  count u32 | ids u32                          (active variant: the list to sign)
- CONSISTENCY sig 64                                     (active variant: signature on the list)
- UNMASK_REQUEST count u32 | ids u32 | nsig u32 | nsig x (id u32 | sig 64)
- UNMASK     count u32 | count x (id u32 | what u8 (0 = self-mask seed, 1 = mask key) | share 33)
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from secagg import keys
from secagg.channel import frame_bytes
from secagg.errors import MalformedMessage
from secagg.shamir import SHARE_BYTES

MAGIC = b"SA"
VERSION = 1
SESSION_BYTES = 16
SERVER = 0xFFFFFFFF
ANY = 0xFFFFFFFE
_HEADER = struct.Struct("<2sBB16sIII")
HEADER_BYTES = _HEADER.size
ENVELOPE_OVERHEAD = HEADER_BYTES + keys.SIG_BYTES
SHARE_PLAIN_BYTES = 4 + 4 + 2 * SHARE_BYTES
CT_BYTES = SHARE_PLAIN_BYTES + keys.BOX_OVERHEAD
_SIG_PERSON = b"fedsec.env.v1"


class Kind(IntEnum):
    ADVERTISE = 1
    KEYS = 2
    SHARES = 3
    CIPHERTEXTS = 4
    MASKED = 5
    SURVIVORS = 6
    CONSISTENCY = 7
    UNMASK_REQUEST = 8
    UNMASK = 9


class What(IntEnum):
    SELF_SEED = 0
    MASK_KEY = 1


@dataclass(frozen=True)
class Envelope:
    kind: Kind
    session: bytes
    sender: int
    receiver: int
    body: bytes


def pack(env: Envelope, signer: keys.Signer) -> bytes:
    head = _HEADER.pack(MAGIC, VERSION, int(env.kind), env.session, env.sender, env.receiver, len(env.body))
    signed = head + env.body
    return signed + signer.sign(signed, _SIG_PERSON)


def peek(data: bytes) -> tuple[Kind, int]:
    """(kind, sender) of a message without verifying it (for routing and metering only)."""
    if len(data) < ENVELOPE_OVERHEAD:
        raise MalformedMessage(f"message: got {len(data)} bytes; want at least {ENVELOPE_OVERHEAD}")
    _, _, kind, _, sender, _, _ = _HEADER.unpack_from(data)
    try:
        return Kind(kind), sender
    except ValueError as e:
        raise MalformedMessage(f"message kind: got {kind}; want one of {[int(k) for k in Kind]}") from e


def unpack(
    data: bytes, *, session: bytes, receiver: int, verify_key_of: Callable[[int], bytes | None]
) -> Envelope:
    """Validate and decode an envelope addressed to ``receiver`` (or to :data:`ANY`) in ``session``."""
    if not isinstance(data, bytes | bytearray):
        raise MalformedMessage(f"message: got {type(data).__name__}; want bytes")
    if len(data) < ENVELOPE_OVERHEAD:
        raise MalformedMessage(f"message: got {len(data)} bytes; want at least {ENVELOPE_OVERHEAD}")
    magic, version, kind, sess, sender, recv, blen = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise MalformedMessage(f"magic: got {magic!r}; want {MAGIC!r}")
    if version != VERSION:
        raise MalformedMessage(f"version: got {version}; want {VERSION}")
    try:
        k = Kind(kind)
    except ValueError as e:
        raise MalformedMessage(f"message kind: got {kind}; want one of {[int(k) for k in Kind]}") from e
    if sess != session:
        raise MalformedMessage(f"session: got {sess.hex()}; want {session.hex()}")
    if recv not in (receiver, ANY):
        raise MalformedMessage(f"receiver: got {recv}; want {receiver}")
    if len(data) != ENVELOPE_OVERHEAD + blen:
        raise MalformedMessage(f"message length: got {len(data)}; want header + {blen} + signature")
    vk = verify_key_of(sender)
    if vk is None:
        raise MalformedMessage(f"sender: got unknown id {sender}; want a registered party")
    split = HEADER_BYTES + blen
    keys.verify(vk, memoryview(data)[:split], bytes(data[split:]), _SIG_PERSON)
    return Envelope(k, bytes(sess), sender, recv, bytes(data[HEADER_BYTES:split]))


# ----------------------------------------------------------------------------------------------------
# bodies


class _Reader:
    def __init__(self, body: bytes, what: str) -> None:
        self.b, self.pos, self.what = body, 0, what

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.b):
            raise MalformedMessage(f"{self.what}: got {len(self.b)} bytes; want at least {self.pos + n}")
        out = self.b[self.pos : self.pos + n]
        self.pos += n
        return out

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "little")

    def count(self, item_bytes: int, limit: int) -> int:
        c = self.u32()
        if c > limit or self.pos + c * item_bytes > len(self.b):
            raise MalformedMessage(f"{self.what}: got count {c}; want <= {limit} entries fitting the body")
        return c

    def done(self) -> None:
        if self.pos != len(self.b):
            raise MalformedMessage(f"{self.what}: got {len(self.b) - self.pos} trailing bytes; want none")


def _increasing(ids: Sequence[int], what: str) -> None:
    if any(a >= b for a, b in itertools.pairwise(ids)):
        raise MalformedMessage(f"{what}: got ids {list(ids)[:10]}; want strictly increasing (no duplicates)")


def _u32(v: int) -> bytes:
    return int(v).to_bytes(4, "little")


def key_statement(session: bytes, cid: int, c_pk: bytes, s_pk: bytes) -> bytes:
    """What a client signs about its advertised keys (so the server cannot substitute them)."""
    return b"adv" + session + _u32(cid) + c_pk + s_pk


def encode_advertise(c_pk: bytes, s_pk: bytes, key_sig: bytes) -> bytes:
    return c_pk + s_pk + key_sig


def decode_advertise(body: bytes) -> tuple[bytes, bytes, bytes]:
    r = _Reader(body, "ADVERTISE")
    out = r.take(32), r.take(32), r.take(64)
    r.done()
    return out


KeyEntry = tuple[int, bytes, bytes, bytes]  # id, c_pk, s_pk, key_sig


def encode_keys(entries: Sequence[KeyEntry]) -> bytes:
    return _u32(len(entries)) + b"".join(_u32(i) + c + s + g for i, c, s, g in entries)


def decode_keys(body: bytes, limit: int) -> list[KeyEntry]:
    r = _Reader(body, "KEYS")
    out = [(r.u32(), r.take(32), r.take(32), r.take(64)) for _ in range(r.count(132, limit))]
    r.done()
    _increasing([e[0] for e in out], "KEYS")
    return out


def encode_shares(commit_b: bytes, cts: Sequence[tuple[int, bytes]]) -> bytes:
    return commit_b + _u32(len(cts)) + b"".join(_u32(i) + c for i, c in cts)


def decode_shares(body: bytes, limit: int) -> tuple[bytes, list[tuple[int, bytes]]]:
    r = _Reader(body, "SHARES")
    commit_b = r.take(32)
    out = [(r.u32(), r.take(CT_BYTES)) for _ in range(r.count(4 + CT_BYTES, limit))]
    r.done()
    _increasing([e[0] for e in out], "SHARES")
    return commit_b, out


def encode_ciphertexts(cts: Sequence[tuple[int, bytes]]) -> bytes:
    return _u32(len(cts)) + b"".join(_u32(i) + c for i, c in cts)


def decode_ciphertexts(body: bytes, limit: int) -> list[tuple[int, bytes]]:
    r = _Reader(body, "CIPHERTEXTS")
    out = [(r.u32(), r.take(CT_BYTES)) for _ in range(r.count(4 + CT_BYTES, limit))]
    r.done()
    _increasing([e[0] for e in out], "CIPHERTEXTS")
    return out


def encode_share_plain(sender: int, receiver: int, sk_share: bytes, b_share: bytes) -> bytes:
    return _u32(sender) + _u32(receiver) + sk_share + b_share


def decode_share_plain(plain: bytes) -> tuple[int, int, bytes, bytes]:
    r = _Reader(plain, "share plaintext")
    out = r.u32(), r.u32(), r.take(SHARE_BYTES), r.take(SHARE_BYTES)
    r.done()
    return out


def encode_ids(ids: Sequence[int]) -> bytes:
    return _u32(len(ids)) + b"".join(_u32(i) for i in ids)


def decode_ids(body: bytes, limit: int, what: str = "SURVIVORS") -> list[int]:
    r = _Reader(body, what)
    out = [r.u32() for _ in range(r.count(4, limit))]
    r.done()
    _increasing(out, what)
    return out


def survivors_statement(session: bytes, ids: Sequence[int]) -> bytes:
    """What a client signs in the consistency check: the session and the survivor list."""
    return b"u3" + session + encode_ids(ids)


def encode_unmask_request(ids: Sequence[int], sigs: Sequence[tuple[int, bytes]]) -> bytes:
    return encode_ids(ids) + _u32(len(sigs)) + b"".join(_u32(i) + s for i, s in sigs)


def decode_unmask_request(body: bytes, limit: int) -> tuple[list[int], list[tuple[int, bytes]]]:
    r = _Reader(body, "UNMASK_REQUEST")
    ids = [r.u32() for _ in range(r.count(4, limit))]
    sigs = [(r.u32(), r.take(64)) for _ in range(r.count(68, limit))]
    r.done()
    _increasing(ids, "UNMASK_REQUEST ids")
    _increasing([i for i, _ in sigs], "UNMASK_REQUEST signatures")
    return ids, sigs


UnmaskEntry = tuple[int, What, bytes]


def encode_unmask(entries: Sequence[UnmaskEntry]) -> bytes:
    return _u32(len(entries)) + b"".join(_u32(i) + bytes([int(w)]) + s for i, w, s in entries)


_UNMASK_DTYPE = np.dtype([("id", "<u4"), ("what", "u1"), ("share", "u1", (SHARE_BYTES,))])


def decode_unmask_arrays(body: bytes, limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """UNMASK body as arrays ``(ids u32, what u8, shares (m, 33) u8)``, validated without Python loops:
    count and length exact, ids strictly increasing, ``what`` in {0, 1}, every share canonical (< p)."""
    r = _Reader(body, "UNMASK")
    count = r.count(_UNMASK_DTYPE.itemsize, limit)
    rec = np.frombuffer(r.take(count * _UNMASK_DTYPE.itemsize), dtype=_UNMASK_DTYPE)
    r.done()
    ids, what, shares = rec["id"], rec["what"], rec["share"]
    if count > 1 and not (ids[1:] > ids[:-1]).all():
        raise MalformedMessage(
            f"UNMASK: got ids {ids[:10].tolist()}; want strictly increasing (no duplicates)"
        )
    if (what > 1).any():
        raise MalformedMessage(
            f"UNMASK entry kind: got {int(what.max())}; want 0 (self seed) or 1 (mask key)"
        )
    # p = 2^256 + 297: a 33-byte little-endian value is < p iff its top byte is 0, or it is 1 with
    # bytes 2..31 zero and bytes 0..1 below 297.
    top = shares[:, SHARE_BYTES - 1]
    low = shares[:, 0].astype(np.int64) + 256 * shares[:, 1].astype(np.int64)
    ok = (top == 0) | ((top == 1) & ~shares[:, 2 : SHARE_BYTES - 1].any(axis=1) & (low < 297))
    if not ok.all():
        raise MalformedMessage("UNMASK share: got a value >= p; want a canonical field element")
    return ids, what, shares


def decode_unmask(body: bytes, limit: int) -> list[UnmaskEntry]:
    """UNMASK body as ``(id, What, share bytes)`` tuples (see :func:`decode_unmask_arrays`)."""
    ids, what, shares = decode_unmask_arrays(body, limit)
    return [(int(i), What(int(w)), sh.tobytes()) for i, w, sh in zip(ids, what, shares)]


# ----------------------------------------------------------------------------------------------------
# size bounds (for transports: a frame is read only up to the largest message its sender may send)


def max_body(kind: Kind, n: int, d: int, word_bytes: int) -> int:
    """Largest valid body of ``kind`` in a round of n clients and vectors of d ring words.

    >>> max_body(Kind.MASKED, n=10, d=1000, word_bytes=4)
    4000
    """
    per_share = 4 + CT_BYTES
    sizes = {
        Kind.ADVERTISE: 32 + 32 + 64,
        Kind.KEYS: 4 + n * (4 + 32 + 32 + 64),
        Kind.SHARES: 32 + 4 + n * per_share,
        Kind.CIPHERTEXTS: 4 + n * per_share,
        Kind.MASKED: d * word_bytes,
        Kind.SURVIVORS: 4 + 4 * n,
        Kind.CONSISTENCY: keys.SIG_BYTES,
        Kind.UNMASK_REQUEST: 4 + 4 * n + 4 + n * (4 + keys.SIG_BYTES),
        Kind.UNMASK: 4 + n * (4 + 1 + SHARE_BYTES),
    }
    return sizes[kind]


def client_round_bytes(n: int, d: int, word_bytes: int, client: int = 0) -> tuple[int, int]:
    """Bytes client ``client`` sends and receives in a passive round over the complete graph, no dropouts.

    With ``E`` = :data:`ENVELOPE_OVERHEAD` (header and signature, 96 bytes), ``C`` = ``4 + CT_BYTES``
    (an addressed encrypted share pair), ``S`` = ``4 + 1 + SHARE_BYTES`` (an unmasking share) and
    ``F(kinds)`` the channel's frame headers around those messages (:func:`channel_overhead`)::

        sent     = 4 E + 128 + (36 + (n - 1) C) + w d + (4 + n S) + F(advertise, shares, masked, unmask)
        received = 3 E + (4 + 132 n) + (4 + (n - 1) C) + (8 + 4 n) + F(keys, ciphertexts, unmask_request)

    (``w`` = ``word_bytes``.) Per client the cost is ``O(n + d)`` (Bonawitz et al., CCS 2017); the
    expansion over a float32 upload tends to ``w / 4`` as ``d`` grows.

    >>> client_round_bytes(n=5, d=20, word_bytes=4)
    (1453, 1584)
    """
    c, s = 4 + CT_BYTES, 4 + 1 + SHARE_BYTES
    body_sent = max_body(Kind.ADVERTISE, n, d, word_bytes) + 36 + (n - 1) * c + d * word_bytes + 4 + n * s
    body_received = 4 + 132 * n + 4 + (n - 1) * c + 8 + 4 * n
    up = channel_overhead(client, [Kind.ADVERTISE, Kind.SHARES, Kind.MASKED, Kind.UNMASK])
    down = channel_overhead(client, [Kind.KEYS, Kind.CIPHERTEXTS, Kind.UNMASK_REQUEST])
    return 4 * ENVELOPE_OVERHEAD + body_sent + up, 3 * ENVELOPE_OVERHEAD + body_received + down


def channel_overhead(client: int, kinds: Sequence[Kind]) -> int:
    """Bytes the channel's frames (:func:`secagg.channel.frame_bytes`, unsigned) add around client
    ``client``'s messages of ``kinds`` to or from the server; the frame kind is the message kind's name.

    >>> channel_overhead(0, [Kind.ADVERTISE])
    42
    """
    return sum(frame_bytes(f"client[{client}]", "server", k.name.lower(), 0) for k in kinds)


def max_message(kinds: Sequence[Kind], n: int, d: int, word_bytes: int) -> int:
    """Largest valid message (envelope included) of any of ``kinds``."""
    return ENVELOPE_OVERHEAD + max(max_body(k, n, d, word_bytes) for k in kinds)
