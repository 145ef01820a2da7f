"""Wire format of the HE protocols: signed, typed frames of length-prefixed parts.

A frame is ``MAGIC | version (1 B) | kind (1 B) | round (uint32 BE) | count (uint32 BE) |
(len (uint32 BE) | part)*`` and travels signed with the sender's Ed25519 key (libsodium through
PyNaCl): ``signature (64) | frame``. The receiver checks the signature first
(:class:`secagg.AuthenticationError`), then magic, version and part count
(:class:`secagg.MalformedMessage`), kind and round (:class:`secagg.StageError`: a frame of the wrong stage
or replayed from another round), then each part's content (a ciphertext that fails to load, or loads
with the wrong size, scale or level, is a :class:`secagg.MalformedMessage`). A tampered or replayed
message is therefore rejected and never turns into a wrong aggregate.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

import nacl.exceptions
import nacl.signing
import numpy as np

from secagg.errors import AuthenticationError, MalformedMessage, StageError

MAGIC = b"FSHE"
VERSION = 1
_HEAD = struct.Struct(">4sBBII")
_LEN = struct.Struct(">I")


class Kind(IntEnum):
    """Message kinds; a receiver states which kind it expects in each stage."""

    UPDATE = 1  # client -> server: encrypted update chunks
    SQ_NORMS = 2  # server -> key holder: encrypted squared norms, one per client
    FACTORS = 3  # key holder -> server: encrypted clipping factors, one per client
    DISTANCES = 4  # server -> key holder: encrypted squared distances, one per pair i < j
    SELECTION = 5  # key holder -> server: selected client indices (int64)
    BLINDED = 6  # server -> key holder: blinded update chunks, n * chunks
    WEIGHTS = 7  # key holder -> server: encrypted selection weights, n * chunks
    AGGREGATE = 8  # server -> key holder: the encrypted aggregate chunks
    PLAINTEXT = 9  # key holder -> server: the decrypted aggregate (float64)
    PAILLIER_UPDATE = 10  # client -> server: Paillier ciphertexts of packed fixed-point words
    PAILLIER_SUM = 11  # server -> key holder: the product of the clients' ciphertexts
    CONTEXT = 12  # key holder -> server / clients (setup): a public CKKS context
    PAILLIER_KEY = 13  # key holder -> server / clients (setup): the Paillier modulus n
    EXCLUDED = 14  # key holder -> server: clients whose decryptions left their range (int64)


def encode_frame(kind: Kind, parts: list[bytes], round_id: int = 0) -> bytes:
    """Frame ``parts`` as a message of ``kind`` in round ``round_id``."""
    out = [_HEAD.pack(MAGIC, VERSION, int(kind), round_id, len(parts))]
    for p in parts:
        out.append(_LEN.pack(len(p)))
        out.append(bytes(p))
    return b"".join(out)


def decode_frame(
    data: bytes, want: Kind, count: int | None = None, round_id: int | None = None
) -> list[bytes]:
    """Parse a frame, checking magic, version, kind, round (when given), part count and lengths."""
    if len(data) < _HEAD.size:
        raise MalformedMessage(f"got a {len(data)}-byte frame; want at least {_HEAD.size} bytes")
    magic, version, kind, rnd, n = _HEAD.unpack_from(data, 0)
    if magic != MAGIC or version != VERSION:
        raise MalformedMessage(f"got magic {magic!r} version {version}; want {MAGIC!r} version {VERSION}")
    if kind != int(want):
        got = Kind(kind).name if kind in Kind._value2member_map_ else str(kind)
        raise StageError(f"got a {got} message; want {want.name}")
    if round_id is not None and rnd != round_id:
        raise StageError(f"got a {want.name} message of round {rnd}; want round {round_id} (a replay?)")
    if count is not None and n != count:
        raise MalformedMessage(f"got {n} parts in a {want.name} message; want {count}")
    parts: list[bytes] = []
    pos = _HEAD.size
    for _ in range(n):
        if pos + _LEN.size > len(data):
            raise MalformedMessage(f"{want.name} message truncated at byte {pos}")
        (size,) = _LEN.unpack_from(data, pos)
        pos += _LEN.size
        if pos + size > len(data):
            raise MalformedMessage(f"{want.name} part of {size} bytes truncated at byte {pos}")
        parts.append(data[pos : pos + size])
        pos += size
    if pos != len(data):
        raise MalformedMessage(f"got {len(data) - pos} trailing bytes after a {want.name} message; want 0")
    return parts


@dataclass
class Identity:
    """A party's Ed25519 signing key (from libsodium); only the 32-byte verify key is ever shared."""

    name: str
    _key: nacl.signing.SigningKey
    round: int = 0  # the round this party is in; stamped on every frame it signs

    @classmethod
    def generate(cls, name: str) -> Identity:
        return cls(name, nacl.signing.SigningKey.generate())

    @property
    def verify_key(self) -> bytes:
        return bytes(self._key.verify_key)

    def seal(self, kind: Kind, parts: list[bytes]) -> bytes:
        """Frame and sign ``parts``."""
        return bytes(self._key.sign(encode_frame(kind, parts, self.round)))

    def __repr__(self) -> str:  # never print the key
        return f"Identity({self.name!r})"


def open_message(
    data: bytes,
    verify_key: bytes,
    sender: str,
    want: Kind,
    count: int | None = None,
    round_id: int | None = None,
) -> list[bytes]:
    """Verify ``sender``'s signature on ``data`` and parse the frame it carries."""
    try:
        frame = nacl.signing.VerifyKey(verify_key).verify(bytes(data))
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError) as e:
        raise AuthenticationError(
            f"message from {sender}: signature does not verify; want a valid signature"
        ) from e
    return decode_frame(frame, want, count, round_id)


def unsigned_frame(data: bytes) -> bytes:
    """The frame inside a signed message (for transcript inspection; does not verify)."""
    return bytes(data[64:])


def array_part(a: np.ndarray, dtype: str) -> bytes:
    """A numeric array as little-endian bytes of ``dtype``."""
    return np.ascontiguousarray(a, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()


def parse_array(part: bytes, dtype: str, length: int, what: str) -> np.ndarray:
    """Inverse of :func:`array_part`, checking the length."""
    dt = np.dtype(dtype).newbyteorder("<")
    if len(part) != length * dt.itemsize:
        raise MalformedMessage(f"{what}: got {len(part)} bytes; want {length * dt.itemsize}")
    return np.frombuffer(part, dtype=dt).astype(np.dtype(dtype))
