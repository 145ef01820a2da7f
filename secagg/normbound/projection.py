"""Random-projection ("wraparound") checks: the norm-bound proof without a range proof per entry.

The squared norm is proven modulo l (``<x, x> + sigma = B mod l``, ``sigma in [0, 2^bs)``); that bounds
the integer norm only if the integer sum of squares cannot wrap, i.e. if every entry is small. The exact
construction (``exact=True``) range-proves every entry (``d b`` bit wires). Following PINE (Rothblum,
Omri, Chen and Talwar, arXiv 2311.10237, the "wraparound checks"), this module instead range-proves K
random projections ``z_k = <R_k, x> mod l`` with ``R_k in {-1, 0, 1}^d``, ``Pr[R_(k,i) = 0] = 1/2``,
``Pr[+1] = Pr[-1] = 1/4``, chosen by Fiat-Shamir from the transcript *after* the commitment C is
absorbed (:func:`matrix`). The proof shows ``z_k + T in [0, 2^bp)`` for every k (bp bits each), with

    T = isqrt(d B),   bp = max(1, bitlen(2 T))        (honest: |z_k| <= ||x||_1 <= sqrt(d) ||x||_2 <= T).

Soundness (per proof). Fix the committed x (binding). If some entry has centered ``|x_i| >= 2^bp``,
condition on every ``R_(k,j)``, ``j != i``: ``z_k`` is one of ``c, c + x_i, c - x_i``; an interval of
``2^bp`` consecutive residues cannot hold ``c`` together with ``c +- x_i``, so it holds either at most
``{c}`` (probability 1/2) or at most ``{c + x_i, c - x_i}`` (probability 1/2): each check passes with
probability <= 1/2, all K with <= 2^-K. Otherwise every ``|x_i| < 2^bp``, the integer sum of squares is
below ``d 4^bp`` and ``d 4^bp + 2^bs < l`` (checked by the parameters) forbids a wrap, so
``sum x_i^2 = B - sigma <= B`` over the integers. Total soundness error: ``2^-K`` plus the argument's
``O(n / l)``; a prover who grinds Q commitments through the random oracle wins with ``Q 2^-K``. The
default ``K = 80`` gives <= 2^-80 per proof (<= 2^-64 after 2^16 attempts). Cost: ``K bp`` bit wires
instead of ``d b`` (1,360 instead of 617,060 at d = 61,706, B = 2^16).

The link between the bits and the commitment is the same linear constraint as in the exact construction,
with the coefficient vector ``c`` (one random power of v per group of bits) replaced by
``R^T c = sum_k c_k R_k`` (:func:`link_vector`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np

from secagg.normbound.group import L

PROJ_DOMAIN = b"fedsec/normbound/projections/v1"
DEFAULT_CHECKS = 80


def offset(d: int, bound: int) -> int:
    """T = isqrt(d B): every projection of an honest vector lies in [-T, T]."""
    return math.isqrt(d * int(bound))


def bits(d: int, bound: int) -> int:
    """bp = max(1, bitlen(2 T)): z + T in [0, 2 T] fits in bp bits."""
    return max(1, (2 * offset(d, bound)).bit_length())


def matrix(seed: bytes, checks: int, d: int) -> np.ndarray:
    """The (checks, d) int8 matrix R in {-1, 0, 1} expanded from ``seed`` with SHAKE-256.

    Two bits per entry (``u64le(len(D)) || D || seed``, D = :data:`PROJ_DOMAIN`): low bit 0 gives 0,
    low bit 1 gives +1 or -1 by the high bit.
    """
    nbytes = -(-2 * checks * d // 8)
    raw = hashlib.shake_256(len(PROJ_DOMAIN).to_bytes(8, "little") + PROJ_DOMAIN + seed).digest(nbytes)
    pairs = np.unpackbits(np.frombuffer(raw, dtype=np.uint8), bitorder="little")[: 2 * checks * d]
    pairs = pairs.reshape(checks, d, 2).astype(np.int8)
    return (pairs[:, :, 0] * (1 - 2 * pairs[:, :, 1])).astype(np.int8)


def project(R: np.ndarray, xs: Sequence[int]) -> list[int]:
    """z = R x over the integers (int64 when the entries are small, Python ints otherwise)."""
    if all(-(2**40) < t < 2**40 for t in xs):
        return [int(t) for t in R.astype(np.int64) @ np.asarray(xs, dtype=np.int64)]
    return [int(t) for t in R.astype(object) @ np.asarray(xs, dtype=object)]


def link_vector(R: np.ndarray, c: Sequence[int]) -> list[int]:
    """sum_k c_k R_k mod l, via 32-bit limbs of c (exact in int64: K 2^32 < 2^63)."""
    limbs = np.array([[(ck >> (32 * j)) & 0xFFFFFFFF for j in range(8)] for ck in c], dtype=np.int64)
    sums = R.T.astype(np.int64) @ limbs  # (d, 8)
    weights = np.array([1 << (32 * j) for j in range(8)], dtype=object)
    return [int(v) % L for v in sums.astype(object) @ weights]


def soundness_error(checks: int, queries: int = 1) -> float:
    """Probability that a vector with a wrapping entry passes all ``checks`` projections, for a prover
    who makes ``queries`` random-oracle attempts: ``min(1, queries 2^-checks)`` (module docstring)."""
    return min(1.0, queries * 2.0**-checks)
