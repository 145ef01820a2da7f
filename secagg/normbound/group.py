"""The prime-order subgroup of Ed25519 through libsodium (PyNaCl's ``nacl.bindings``).

Scalars are Python ``int`` modulo the group order ``l = 2^252 + 27742317777372353535851937790883648493``
(arithmetic on ints is faster than a libsodium call per operation). Points are their canonical 32-byte
encodings. libsodium refuses the identity element in scalar multiplication, so this module represents it
explicitly as :data:`IDENTITY` (the encoding of the neutral point, y = 1) and handles it and the zero
scalar in Python.

Points that arrive from a peer go through :func:`decode_point`, which calls
``crypto_core_ed25519_is_valid_point``: it rejects non-canonical encodings, points off the curve, points of
small order and points outside the prime-order subgroup. Scalars from a peer go through
:func:`decode_scalar`, which rejects encodings ``>= l``.

Multi-scalar multiplication (:func:`msm`) is the sum of one ``crypto_scalarmult_ed25519_noclamp`` call per
term (the floor that the benchmarks compare with), except when every scalar is a small signed integer
(committed fixed-point updates, their sums, bit vectors): :func:`msm_small` then uses a bucket method with
point additions only, ``sum_v v * B_v = sum_{k>=1} sum_{v>=k} B_v`` (running sums, as in Pippenger's
algorithm with one window), which costs ``d + 2 * max|v|`` additions instead of ``d`` scalar
multiplications.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import nacl.bindings as nb
import nacl.utils
import numpy as np
from nacl._sodium import ffi, lib

from secagg.normbound.errors import MalformedProof

L = 2**252 + 27742317777372353535851937790883648493
"""Order of the prime-order subgroup of Ed25519."""

POINT_BYTES = 32
SCALAR_BYTES = 32
IDENTITY = b"\x01" + bytes(31)
"""Encoding of the neutral element (x = 0, y = 1)."""

_valid = nb.crypto_core_ed25519_is_valid_point


# The three hot operations call libsodium through cffi directly: PyNaCl's wrappers re-check types and
# lengths on every call, which costs about a third of a point addition. Inputs here are always 32-byte
# encodings produced by this module or validated by decode_point.
def _smul(k: bytes, p: bytes) -> bytes:
    """k * p (libsodium refuses a zero result: k = 0 mod l or p of small order)."""
    out = ffi.new("unsigned char[]", POINT_BYTES)
    if lib.crypto_scalarmult_ed25519_noclamp(out, k, p) != 0:
        raise RuntimeError("crypto_scalarmult_ed25519_noclamp: got a failing call; want k != 0 mod l")
    return ffi.buffer(out, POINT_BYTES)[:]


def _add(p: bytes, q: bytes) -> bytes:
    out = ffi.new("unsigned char[]", POINT_BYTES)
    if lib.crypto_core_ed25519_add(out, p, q) != 0:
        raise RuntimeError("crypto_core_ed25519_add: got a point off the curve; want valid points")
    return ffi.buffer(out, POINT_BYTES)[:]


def _sub(p: bytes, q: bytes) -> bytes:
    out = ffi.new("unsigned char[]", POINT_BYTES)
    if lib.crypto_core_ed25519_sub(out, p, q) != 0:
        raise RuntimeError("crypto_core_ed25519_sub: got a point off the curve; want valid points")
    return ffi.buffer(out, POINT_BYTES)[:]


def scalar_bytes(k: int) -> bytes:
    """Canonical little-endian encoding of ``k mod l``."""
    return (k % L).to_bytes(SCALAR_BYTES, "little")


def decode_scalar(data: bytes, what: str = "scalar") -> int:
    """Decode a canonical scalar; raise :class:`MalformedProof` on a wrong length or a value ``>= l``."""
    if len(data) != SCALAR_BYTES:
        raise MalformedProof(f"{what}: got {len(data)} bytes; want {SCALAR_BYTES}")
    k = int.from_bytes(data, "little")
    if k >= L:
        raise MalformedProof(f"{what}: got a non-canonical scalar (>= l); want an integer in [0, l)")
    return k


def decode_point(data: bytes, what: str = "point") -> bytes:
    """Validate a point received from a peer (canonical, on the curve, prime order, not small order)."""
    if not isinstance(data, bytes | bytearray) or len(data) != POINT_BYTES:
        raise MalformedProof(f"{what}: got {len(data)} bytes; want {POINT_BYTES}")
    data = bytes(data)
    if not _valid(data):
        raise MalformedProof(
            f"{what}: got an invalid point (small order, non-canonical or outside the prime-order "
            "subgroup); want a valid Ed25519 point of order l"
        )
    return data


def random_scalar() -> int:
    """A uniform scalar in [0, l) from libsodium's CSPRNG (64 bytes reduced: bias < 2^-250)."""
    return int.from_bytes(nacl.utils.random(64), "little") % L


def random_scalars(count: int) -> list[int]:
    """``count`` uniform scalars from one CSPRNG call."""
    raw = nacl.utils.random(64 * count) if count else b""
    return [int.from_bytes(raw[64 * i : 64 * i + 64], "little") % L for i in range(count)]


def add(p: bytes, q: bytes) -> bytes:
    """p + q."""
    if p == IDENTITY:
        return q
    if q == IDENTITY:
        return p
    return _add(p, q)


def sub(p: bytes, q: bytes) -> bytes:
    """p - q."""
    if q == IDENTITY:
        return p
    if p == IDENTITY:
        return neg(q)
    return _sub(p, q)


def neg(p: bytes) -> bytes:
    """-p."""
    if p == IDENTITY:
        return p
    return _sub(IDENTITY, p)


def smul(k: int, p: bytes) -> bytes:
    """k * p for a point ``p`` of the prime-order subgroup (or the identity)."""
    k %= L
    if k == 0 or p == IDENTITY:
        return IDENTITY
    return _smul(k.to_bytes(SCALAR_BYTES, "little"), p)


def sum_points(points: Iterable[bytes]) -> bytes:
    """The sum of ``points`` (the identity for none)."""
    acc = IDENTITY
    for p in points:
        acc = add(acc, p)
    return acc


def msm(scalars: Sequence[int], points: Sequence[bytes]) -> bytes:
    """sum_i scalars[i] * points[i], one scalar multiplication per non-zero term."""
    if len(scalars) != len(points):
        raise ValueError(f"msm: got {len(scalars)} scalars and {len(points)} points; want equal lengths")
    acc = IDENTITY
    for k, p in zip(scalars, points):
        k %= L
        if k == 0 or p == IDENTITY:
            continue
        if k == 1:
            acc = add(acc, p)
        elif k == L - 1:
            acc = sub(acc, p)
        else:
            acc = add(acc, _smul(k.to_bytes(SCALAR_BYTES, "little"), p))
    return acc


def _bucket_sum(values: np.ndarray, points: Sequence[bytes]) -> bytes:
    """sum_i values[i] * points[i] for non-negative integer ``values`` via buckets and running sums."""
    top = int(values.max()) if values.size else 0
    if top == 0:
        return IDENTITY
    buckets: list[bytes] = [IDENTITY] * (top + 1)
    for i in np.flatnonzero(values):
        v = int(values[i])
        buckets[v] = add(buckets[v], points[int(i)])
    running = IDENTITY
    total = IDENTITY
    for v in range(top, 0, -1):
        running = add(running, buckets[v])
        total = add(total, running)
    return total


def msm_small(values: np.ndarray | Sequence[int], points: Sequence[bytes]) -> bytes:
    """sum_i values[i] * points[i] for small signed integers ``values``, with point additions only.

    Cost: about ``count_nonzero(values) + 2 * max|values|`` additions. Falls back to :func:`msm` when the
    bucket range is larger than a few times the number of terms (then scalar multiplication is cheaper).
    """
    v = np.asarray(values)
    if v.shape != (len(points),):
        raise ValueError(f"msm_small: got values of shape {v.shape}; want ({len(points)},)")
    if v.size == 0:
        return IDENTITY
    if v.dtype.kind not in "iu":
        raise TypeError(f"msm_small: got dtype {v.dtype}; want an integer dtype")
    # the range in Python integers: np.abs(-2^63) wraps in int64, and uint64 above 2^63 would wrap on a cast
    top = max(abs(int(v.max())), abs(int(v.min())))
    if top > 4 * v.size + 64:
        return msm([int(t) for t in v], points)
    v = v.astype(np.int64)  # exact: every |value| <= 4 size + 64
    pos = _bucket_sum(np.where(v > 0, v, 0), points)
    negs = _bucket_sum(np.where(v < 0, -v, 0), points)
    return sub(pos, negs)
