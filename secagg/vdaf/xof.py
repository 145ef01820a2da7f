"""XofTurboShake128 of draft-irtf-cfrg-vdaf-20 (Section 6.2.1) and its domain-separation tags.

TurboSHAKE128(M, D = 1, L) of RFC 9861 over
    M = le16(len dst) || dst || u8(len seed) || seed || binder,
read as one stream (successive ``next`` calls continue it). Field vectors are sampled by rejection:
each ENCODED_SIZE little-endian chunk is masked to next_power_of_2(p) - 1 and kept when < p.
The tag is dst = u8 VERSION || u8 class || be32 algorithm ID || be16 usage (|| ctx, added by Prio3).
"""

from __future__ import annotations

import numpy as np
from Cryptodome.Hash import TurboSHAKE128

from secagg.vdaf.errors import VdafParameterError
from secagg.vdaf.field import Field, Field64, Vec

VERSION = 18
SEED_SIZE = 32


def format_dst(algo_class: int, algo: int, usage: int) -> bytes:
    """u8 VERSION || u8 algo_class || be32 algo || be16 usage (the draft's format_dst)."""
    if not (0 <= algo_class < 2**8 and 0 <= algo < 2**32 and 0 <= usage < 2**16):
        raise VdafParameterError(
            f"got class {algo_class}, algo {algo}, usage {usage}; want < 2^8, < 2^32, < 2^16"
        )
    return bytes([VERSION, algo_class]) + algo.to_bytes(4, "big") + usage.to_bytes(2, "big")


class XofTurboShake128:
    """A seeded stream bound to a domain-separation tag and a binder string."""

    SEED_SIZE = SEED_SIZE

    def __init__(self, seed: bytes, dst: bytes, binder: bytes) -> None:
        if len(seed) > 255:
            raise VdafParameterError(f"got a {len(seed)}-byte seed; want <= 255 bytes")
        if len(dst) > 65535:
            raise VdafParameterError(f"got a {len(dst)}-byte tag; want <= 65535 bytes")
        msg = len(dst).to_bytes(2, "little") + dst + bytes([len(seed)]) + seed + binder
        self._h = TurboSHAKE128.new(domain=1, data=msg)

    def next(self, length: int) -> bytes:
        """The next ``length`` bytes of the stream."""
        return bytes(self._h.read(length)) if length else b""

    def next_vec(self, field: type[Field], length: int) -> Vec:
        """The next ``length`` field elements (rejection sampling, stream order kept)."""
        size = field.ENCODED_SIZE
        out: list[Vec] = []
        have = 0
        while have < length:
            need = length - have
            raw = self.next(need * size)
            if field is Field64:
                v = np.frombuffer(raw, dtype="<u8").astype(np.uint64)
                v = v[v < np.uint64(field.MODULUS)]
            else:
                ints = [int.from_bytes(raw[i : i + size], "little") for i in range(0, len(raw), size)]
                v = field.arr([x for x in ints if x < field.MODULUS]) if ints else field.zeros(0)
            out.append(v)
            have += v.shape[0]
        return np.concatenate(out) if out else field.zeros(0)

    @classmethod
    def derive_seed(cls, seed: bytes, dst: bytes, binder: bytes) -> bytes:
        """The first SEED_SIZE bytes of the stream."""
        return cls(seed, dst, binder).next(cls.SEED_SIZE)

    @classmethod
    def expand_into_vec(cls, field: type[Field], seed: bytes, dst: bytes, binder: bytes, length: int) -> Vec:
        """``length`` field elements from a fresh stream."""
        return cls(seed, dst, binder).next_vec(field, length)
