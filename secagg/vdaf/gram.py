"""Pairwise inner products of additively shared vectors from one "square" correlation (Beaver style).

Two servers hold X = X_0 + X_1 (n x d over F_p). A dealer gives them shares of a uniformly random A
(n x d) and of C = A A^T: A = A_0 + A_1, C = C_0 + C_1. The servers open E = X - A (a one-time pad
of X: E is uniform and independent of X when A is used once) and server j computes

    G_j = [j = 0] E E^T + E A_j^T + A_j E^T + C_j,

so that G_0 + G_1 = (E + A)(E + A)^T = X X^T. Opening G gives the Gram matrix, hence the squared
distances D_ik = G_ii + G_kk - 2 G_ik that Krum, Multi-Krum, NNM and Bulyan's selection need: the
servers learn exactly these (as the CKKS key holder does), nothing else of X. The dealer must not
collude with either server (a third party here; ELSA, Rathee et al. IEEE S&P 2023, has the clients
deal). The helper's correlation is a 32-byte seed (A_1, C_1 expanded from it); only the leader's
A_0, C_0 are sent in full. The opened values are signed: with norms proved <= B_enc (PINE),
|G_ik| <= B_enc^2 < p / 3, so the residues above p / 2 are the negative ones.

``field_matmul`` is the exact product mod p: for Field64 each operand is split into four 16-bit limbs,
and each of the 16 limb products is a float64 BLAS product whose sums stay below d 2^32 < 2^53
(d < 2^21), recombined mod p.
"""

from __future__ import annotations

from dataclasses import dataclass

import nacl.utils
import numpy as np

from secagg.vdaf._blas import one_blas_thread
from secagg.vdaf.errors import VdafParameterError
from secagg.vdaf.field import Field, Field64, Vec
from secagg.vdaf.xof import XofTurboShake128, format_dst

_DST_A, _DST_C = format_dst(1, 0xFFFF2000, 1), format_dst(1, 0xFFFF2000, 2)


def field_matmul(field: type[Field], a: Vec, b: Vec) -> Vec:
    """a @ b mod p, exact (a: (n, d), b: (d, m))."""
    if a.shape[1] != b.shape[0]:
        raise VdafParameterError(f"got shapes {a.shape} @ {b.shape}; want matching inner dimensions")
    if field is not Field64 or a.shape[1] >= 2**21:
        prod = np.asarray(a, dtype=object) @ np.asarray(b, dtype=object)
        return field.arr(prod % field.MODULUS)
    m16 = np.uint64(0xFFFF)
    la = [((a >> np.uint64(16 * i)) & m16).astype(np.float64) for i in range(4)]
    lb = [((b >> np.uint64(16 * j)) & m16).astype(np.float64) for j in range(4)]
    out = np.zeros((a.shape[0], b.shape[1]), dtype=np.uint64)
    for i in range(4):
        for j in range(4):
            with one_blas_thread():
                part = (la[i] @ lb[j]).astype(np.uint64)  # exact integers < 2^53
            scale = np.array([pow(2, 16 * (i + j), field.MODULUS)], dtype=np.uint64)
            out = field.add(out, field.mul(part, scale))
    return out


@dataclass(frozen=True)
class SquareShare:
    """One server's share of (A, A A^T)."""

    a: Vec
    c: Vec


def expand_helper(field: type[Field], seed: bytes, n: int, d: int) -> SquareShare:
    """The helper's (A_1, C_1) from its 32-byte seed."""
    a = XofTurboShake128.expand_into_vec(field, seed, _DST_A, b"", n * d).reshape(n, d)
    c = XofTurboShake128.expand_into_vec(field, seed, _DST_C, b"", n * n).reshape(n, n)
    return SquareShare(a, c)


def deal_square(field: type[Field], n: int, d: int) -> tuple[SquareShare, bytes]:
    """(the leader's share A_0, C_0 = A A^T - C_1; the helper's seed); randomness from libsodium."""
    seed0, seed1 = nacl.utils.random(32), nacl.utils.random(32)
    a0 = XofTurboShake128.expand_into_vec(field, seed0, _DST_A, b"", n * d).reshape(n, d)
    helper = expand_helper(field, seed1, n, d)
    a = field.add(a0, helper.a)
    c0 = field.sub(field_matmul(field, a, a.T), helper.c)
    return SquareShare(a0, c0), seed1


def masked_share(field: type[Field], x_share: Vec, corr: SquareShare) -> Vec:
    """E_j = X_j - A_j, the server's contribution to the opened E = X - A."""
    if x_share.shape != corr.a.shape:
        raise VdafParameterError(f"got shares of shape {x_share.shape}; want {corr.a.shape}")
    return field.sub(x_share, corr.a)


def gram_share(field: type[Field], agg_id: int, e: Vec, corr: SquareShare) -> Vec:
    """G_j = [j = 0] E E^T + E A_j^T + A_j E^T + C_j (E the opened matrix)."""
    cross = field_matmul(field, e, corr.a.T)
    g = field.add(field.add(cross, cross.T), corr.c)
    return field.add(g, field_matmul(field, e, e.T)) if agg_id == 0 else g


def signed(field: type[Field], g: Vec) -> np.ndarray:
    """Residues as signed integers (above p / 2 negative), as float64."""
    vals = np.array(field.to_ints(g), dtype=object).reshape(g.shape)
    p = field.MODULUS
    return np.vectorize(lambda v: float(v - p) if v > p // 2 else float(v), otypes=[np.float64])(vals)
