"""Encrypted pairwise squared distances with ONE relinearization and ONE rescale per pair.

For two updates of ``k`` chunks, ``E(||a - b||^2)`` is

    acc = sum_c (a_c - b_c)^2          (k subtractions, k squarings, k - 1 additions; size-3 ciphertexts)
    relinearize(acc); rescale(acc)     (once: key switching and the division by q_1)
    rotation-sum(acc)                  (log2(N/2) rotations and additions)

The tensor product of a squaring is linear in the ciphertext components, so the size-3 squares can be
added before key switching: relinearization and rescaling are linear maps (up to rounding), which makes
the result the same distance as :func:`protocols.ckks.parties.sq_distance` (that one relinearizes and
rescales each of the ``k`` squares) with *less* noise (one key switch and one rounding instead of ``k``).
TenSEAL's :class:`CKKSVector` cannot hold a size-3 ciphertext through a sum and relinearize it later, so
this module drives SEAL's evaluator directly (``tenseal.sealapi``) on the ciphertexts the server loaded.

The output is a TenSEAL CKKS vector serialization of one slot, exactly as the key holder expects from
``sq_distance(..).serialize()``: one size-2 ciphertext at ``q_0`` with the scale set back to ``2^s``
(TenSEAL's convention after a rescale, hence the same ``q_1 / 2^s`` relative error documented in
:func:`protocols.ckks.krum.distance_error_bound`). What the key holder receives -- one ciphertext per
pair encrypting ``||x_i - x_j||^2`` in every slot -- is unchanged; only the server's work is.

Measured (``benchmarks/he.py``, N = 8192, d = 61,706 = 16 chunks, shared 2-core machine, the two
methods alternated, medians of 15): 92.7 ms per pair chunkwise against 38.3 ms deferred (2.4x); the
``ckks_multi_krum`` distance phase at n = 25 went from 30.9 s to 10.8 s (critical path 32.8 s to 12.4 s).
What remains per pair is mostly the 12 rotations of the rotation-sum. Equality checks:
``tests/protocols/test_ckks_distances.py``.
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Sequence
from typing import Any

import tenseal as ts
import tenseal.sealapi as sealapi

Raw = Any  # a SEAL ciphertext (TenSEAL ships no type information)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def vector_proto(ciphertext: bytes, size: int, scale: float) -> bytes:
    """A TenSEAL ``CKKSVectorProto`` holding one SEAL-serialized ciphertext of ``size`` slots.

    Fields (``tenseal/proto/tensors.proto``): 1 ``sizes`` (packed uint32), 2 ``ciphertexts`` (bytes),
    3 ``scale`` (double).
    """
    sizes = _varint(size)
    return (
        b"\x0a"
        + _varint(len(sizes))
        + sizes
        + b"\x12"
        + _varint(len(ciphertext))
        + ciphertext
        + b"\x19"
        + struct.pack("<d", scale)
    )


class _Sink:
    """SEAL's Python binding saves ciphertexts to a path only: an in-memory file per process."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        if hasattr(os, "memfd_create"):
            self.fd = os.memfd_create("fedsec-ckks")
            self.path = f"/proc/self/fd/{self.fd}"
        else:  # pragma: no cover - non-Linux
            self.fd, self.path = tempfile.mkstemp(prefix="fedsec-ckks-")

    def dump(self, ct: Raw) -> bytes:
        os.ftruncate(self.fd, 0)
        ct.save(self.path)
        return os.pread(self.fd, os.fstat(self.fd).st_size, 0)


class DistanceEvaluator:
    """The server's evaluator for ``E(||a - b||^2)`` with deferred relinearization and rescaling.

    Args:
        ctx: the server's public TenSEAL context (relinearization and Galois keys).
        scale: the nominal scale ``2^s`` restored after the rescale (TenSEAL's convention).
        slots: ``N / 2``, the slots a rotation-sum adds up.

    Usage::

        ev = DistanceEvaluator(server.ctx, 2.0 ** 40, 4096); raw = [ev.raw(u) for u in updates]
        part = ev.sq_distance(raw[0], raw[1])   # bytes, as sq_distance(u0, u1).serialize()
    """

    def __init__(self, ctx: ts.Context, scale: float, slots: int) -> None:
        self._ev = sealapi.Evaluator(ctx.seal_context().data)
        self._rk = ctx.relin_keys().data
        self._gk = ctx.galois_keys().data
        self._scale = scale
        self._slots = slots
        self._sink: _Sink | None = None

    @staticmethod
    def raw(update: Sequence[Any]) -> list[Raw]:
        """The SEAL ciphertexts of an update (one per chunk; copies, made once per update)."""
        return [v.ciphertext()[0] for v in update]

    def sq_distance(self, a: Sequence[Raw], b: Sequence[Raw]) -> bytes:
        """Serialized ``E(||a - b||^2)`` (one slot; every slot holds the total). Depth 1."""
        ev = self._ev
        acc: Raw | None = None
        for x, y in zip(a, b, strict=True):
            diff = sealapi.Ciphertext()
            ev.sub(x, y, diff)
            ev.square_inplace(diff)
            if acc is None:
                acc = diff
            else:
                ev.add_inplace(acc, diff)
        if acc is None:
            raise ValueError("got updates of 0 chunks; want at least 1")
        ev.relinearize_inplace(acc, self._rk)
        ev.rescale_to_next_inplace(acc)
        acc.scale = self._scale
        step = self._slots // 2
        while step > 0:
            rotated = sealapi.Ciphertext()
            ev.rotate_vector(acc, step, self._gk, rotated)
            ev.add_inplace(acc, rotated)
            step //= 2
        if self._sink is None or self._sink.pid != os.getpid():  # a forked worker gets its own file
            self._sink = _Sink()
        return vector_proto(self._sink.dump(acc), 1, self._scale)
