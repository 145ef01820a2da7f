"""Inner-product argument (Bulletproofs-style, logarithmic size) for arbitrary vector lengths.

Statement: generators ``G, H`` (length n, no known relations), per-position public scalars ``s`` on ``H``
(``H'_i = s_i H_i``; the range proof needs ``s_i = y^-i``), a point ``U`` and a point ``P``. The prover
knows ``a, b`` with

    P = <a, G> + <b, H'> + <a, b> U.

Each round splits the current vectors into ``lo`` (the first ceil(m/2) entries) and ``hi`` (the rest; an
odd length leaves the last ``lo`` entry unpaired), sends

    L = <a_lo, G_hi> + <b_hi, H'_lo> + <a_lo, b_hi> U,     R = <a_hi, G_lo> + <b_lo, H'_hi> + <a_hi, b_lo> U,

receives the challenge x and folds

    a' = a_lo + x^-1 a_hi,  b' = b_lo + x b_hi,  G' = G_lo + x G_hi,  H' = H'_lo + x^-1 H'_hi,

which gives ``P' = P + x L + x^-1 R = <a', G'> + <b', H'> + <a', b'> U``. After ceil(log2 n) rounds the
prover sends the scalars a, b. The verifier never folds points: unrolling the folds, the final
generators are ``sum_i g_i G_i`` and ``sum_i h_i s_i H_i`` with ``g_i`` (``h_i``) the product of x_k
(x_k^-1) over the rounds k in which position i sat in the ``hi`` half, and the check is the single
multi-scalar multiplication

    P + sum_k (x_k L_k + x_k^-1 R_k) == a <g, G> + b <h, s o H> + a b U.

This is the folding of Bootle et al. (EUROCRYPT 2016) and Bunz et al. (Bulletproofs, IEEE S&P 2018,
Protocol 2) with the challenge applied to one half only (G' = G_lo + x G_hi instead of
x^-1 G_lo + x G_hi), which halves the prover's scalar multiplications in the folds. Soundness (witness
extended emulation from three distinct challenges per round) holds under the discrete-log assumption
exactly as for Protocol 2: from ``P' = P + x L + x^-1 R`` for three x one solves for openings of L, R, P.
The argument is not zero-knowledge by itself; the norm proof only runs it on vectors that are already
uniformly masked.

Costs: the prover makes about 4n (L, R) + 2n (folds of G and H) scalar multiplications, the scaling
``s`` included (it is carried as scalars beside the points, see :func:`prove`); the verifier none
beyond the final MSM of size 2n + 2 ceil(log2 n) + 1. Proof: 2 ceil(log2 n) points + 2 scalars.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from secagg.normbound.errors import MalformedProof
from secagg.normbound.group import (
    POINT_BYTES,
    SCALAR_BYTES,
    L,
    decode_point,
    decode_scalar,
    msm,
    scalar_bytes,
)
from secagg.normbound.parallel import Workers
from secagg.normbound.transcript import Transcript


def rounds(n: int) -> int:
    """Number of folding rounds for length n: ceil(log2 n)."""
    k = 0
    while n > 1:
        n = (n + 1) // 2
        k += 1
    return k


@dataclass(frozen=True)
class IPAProof:
    """The prover's messages: one (L, R) pair per round and the final scalars a, b."""

    L: tuple[bytes, ...]
    R: tuple[bytes, ...]
    a: int
    b: int

    def to_bytes(self) -> bytes:
        return (
            b"".join(p for pair in zip(self.L, self.R) for p in pair)
            + scalar_bytes(self.a)
            + scalar_bytes(self.b)
        )

    @staticmethod
    def size(n: int) -> int:
        """Serialized size in bytes for vectors of length n."""
        return 2 * rounds(n) * POINT_BYTES + 2 * SCALAR_BYTES

    @classmethod
    def from_bytes(cls, data: bytes, n: int) -> IPAProof:
        """Decode and validate (every point checked, scalars canonical) for vectors of length n."""
        k = rounds(n)
        if len(data) != cls.size(n):
            raise MalformedProof(f"inner-product proof: got {len(data)} bytes; want {cls.size(n)} for n={n}")
        pts = [decode_point(data[32 * i : 32 * i + 32], f"inner-product point {i}") for i in range(2 * k)]
        off = 2 * k * POINT_BYTES
        a = decode_scalar(data[off : off + 32], "inner-product a")
        b = decode_scalar(data[off + 32 : off + 64], "inner-product b")
        return cls(L=tuple(pts[0::2]), R=tuple(pts[1::2]), a=a, b=b)


def _ip(u: Sequence[int], v: Sequence[int]) -> int:
    return sum(x * y for x, y in zip(u, v)) % L


def _batch_inverse(values: Sequence[int]) -> list[int]:
    """``[v^-1 mod l]`` with one modular inversion (Montgomery's trick); every value must be non-zero."""
    prefix = [1]
    for v in values:
        prefix.append(prefix[-1] * v % L)
    inv = pow(prefix[-1], -1, L)
    out = [0] * len(values)
    for i in range(len(values) - 1, -1, -1):
        out[i] = inv * prefix[i] % L
        inv = inv * values[i] % L
    return out


def prove(
    transcript: Transcript,
    G: Sequence[bytes],
    H: Sequence[bytes],
    U: bytes,
    a: Sequence[int],
    b: Sequence[int],
    h_scale: Sequence[int] | None = None,
    pool: Workers | None = None,
) -> IPAProof:
    """Prove knowledge of ``a, b`` for ``P = <a, G> + <b, s o H> + <a, b> U`` (P itself is not needed:
    the caller has bound it to ``transcript``).

    The scaled generators ``s o H`` are never formed: the prover carries points ``H*`` and scalars
    ``s*`` with ``H'_i = s*_i H*_i`` and folds ``H'_lo + x^-1 H'_hi = s*_lo (H*_lo + (x^-1 s*_hi / s*_lo)
    H*_hi)``, one scalar multiplication per pair like G (instead of two in the first round). The messages
    are the same group elements either way. ``pool`` splits the MSMs and folds of each round over its
    processes (:mod:`parallel`; identical results)."""
    n = len(a)
    if not (len(b) == len(G) == len(H) == n) or n < 1 or (h_scale is not None and len(h_scale) != n):
        raise ValueError(f"ipa.prove: got lengths a={n}, b={len(b)}, G={len(G)}, H={len(H)}; want equal >= 1")
    work = pool if pool is not None else Workers(1)
    av, bv, Gv, Hv = [x % L for x in a], [x % L for x in b], list(G), list(H)
    sv = [1] * n if h_scale is None else [x % L for x in h_scale]
    if any(x == 0 for x in sv):
        raise ValueError("ipa.prove: got a zero scale; want h_scale entries != 0 mod l")
    sv_inv = [1] * n if h_scale is None else _batch_inverse(sv)
    Ls: list[bytes] = []
    Rs: list[bytes] = []
    while n > 1:
        half = (n + 1) // 2
        m = n - half
        a_lo, a_hi, b_lo, b_hi = av[:half], av[half:], bv[:half], bv[half:]
        bh_s = [b_hi[i] * sv[i] % L for i in range(m)]
        bl_s = [b_lo[i] * sv[half + i] % L for i in range(m)]
        c_l = _ip(a_lo[:m], b_hi)
        c_r = _ip(a_hi, b_lo[:m])
        Lp, Rp = work.msms(
            [
                ([*a_lo[:m], *bh_s, c_l], [*Gv[half:], *Hv[:m], U]),
                ([*a_hi, *bl_s, c_r], [*Gv[:m], *Hv[half:], U]),
            ]
        )
        transcript.append(b"ipa:L", Lp)
        transcript.append(b"ipa:R", Rp)
        x = transcript.challenge(b"ipa:x")
        xi = pow(x, -1, L)
        Ls.append(Lp)
        Rs.append(Rp)
        av = [(a_lo[i] + xi * a_hi[i]) % L for i in range(m)] + a_lo[m:]
        bv = [(b_lo[i] + x * b_hi[i]) % L for i in range(m)] + b_lo[m:]
        if half > 1:  # the last fold's generators are never used
            h_coef = [xi * sv[half + i] % L * sv_inv[i] % L for i in range(m)]
            G_new, H_new = work.folds([(Gv[:m], Gv[half:], [x] * m), (Hv[:m], Hv[half:], h_coef)])
            Gv = G_new + Gv[m:half]
            Hv = H_new + Hv[m:half]
            sv, sv_inv = sv[:half], sv_inv[:half]
        n = half
    return IPAProof(L=tuple(Ls), R=tuple(Rs), a=av[0], b=bv[0])


@dataclass(frozen=True)
class IPACheck:
    """The verifier's side of the final equation, ready to be merged into one MSM:

    ``P == a * <g, G> + b * <h, H'> + a b U - sum_k (x_k L_k + x_k^-1 R_k)``.
    """

    g: list[int]
    h: list[int]
    a: int
    b: int
    terms: list[tuple[int, bytes]]


def verifier_check(transcript: Transcript, proof: IPAProof, n: int) -> IPACheck:
    """Replay the challenges of ``proof`` and unroll the folds (no group operations)."""
    k = rounds(n)
    if len(proof.L) != k or len(proof.R) != k:
        raise MalformedProof(f"inner-product proof: got {len(proof.L)} rounds; want {k} for n={n}")
    xs: list[int] = []
    for Lp, Rp in zip(proof.L, proof.R):
        transcript.append(b"ipa:L", Lp)
        transcript.append(b"ipa:R", Rp)
        xs.append(transcript.challenge(b"ipa:x"))
    sizes = [n]
    for _ in range(k):
        sizes.append((sizes[-1] + 1) // 2)
    g: list[int] = [1]
    h: list[int] = [1]
    for r in range(k - 1, -1, -1):
        x = xs[r]
        xi = pow(x, -1, L)
        m = sizes[r] - sizes[r + 1]
        g = g + [c * x % L for c in g[:m]]
        h = h + [c * xi % L for c in h[:m]]
    terms = [(-x % L, Lp) for x, Lp in zip(xs, proof.L)] + [
        (-pow(x, -1, L) % L, Rp) for x, Rp in zip(xs, proof.R)
    ]
    return IPACheck(g=g, h=h, a=proof.a, b=proof.b, terms=terms)


def verify(
    transcript: Transcript,
    P: bytes,
    G: Sequence[bytes],
    H: Sequence[bytes],
    U: bytes,
    proof: IPAProof,
    h_scale: Sequence[int] | None = None,
) -> bool:
    """Standalone check of ``proof`` against ``P`` (one MSM)."""
    n = len(G)
    chk = verifier_check(transcript, proof, n)
    s = [1] * n if h_scale is None else list(h_scale)
    rhs = msm(
        [*(chk.a * gi for gi in chk.g), *(chk.b * hi * si for hi, si in zip(chk.h, s)), chk.a * chk.b]
        + [c for c, _ in chk.terms],
        [*G, *H, U] + [p for _, p in chk.terms],
    )
    return rhs == P
