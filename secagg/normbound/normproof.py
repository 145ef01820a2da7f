"""Zero-knowledge proof that a Pedersen-committed integer vector has a bounded squared L2 norm.

Statement (public): parameters ``(d, b, B)``, the commitment ``C = <x, G> + r h`` (key of dimension d,
see :mod:`pedersen`), the context (session id, round, client id). Witness: ``x in Z^d``, ``r``.
Relation:

    -2^(b-1) <= x_i < 2^(b-1) for every i      and      s = sum_i x_i^2 <= B      (over the integers).

Why the entry bound: the group works modulo l ~ 2^252, so ``<x, x> = s mod l`` alone bounds nothing (a
cheater picks huge entries whose squares wrap). With every entry in [-2^(b-1), 2^(b-1)) the integer sum
of squares is at most ``d 4^(b-1)``, and the parameters require ``d 4^(b-1) + 2^bs < l`` (``bs`` the slack
bits, ``B < 2^bs``) so that neither ``s`` nor the slack ``sigma = B - s`` can wrap: ``s + sigma = B mod l``
with ``sigma in [0, 2^bs)`` then forces ``s <= B`` over the integers.

Construction (one Bulletproofs-style argument, Bunz et al., IEEE S&P 2018, Sections 4.1-4.2, extended by
one block; RoFL, Lycklama et al., S&P 2023, proves the same relation with per-coordinate commitments).
Wires: the bit vector ``a_L in {0,1}^N``, ``N = d b + bs`` (the b bits of each ``v_i = x_i + 2^(b-1)``,
then the bits of ``sigma``), ``a_R = a_L - 1``, and an "x block" of length d. Generators: ``G_N, H_N``
(bits), ``G`` (the update generators of ``C``), ``H_d``, ``h``, ``g`` and ``U``, all independent.

1. P -> V: ``A = <a_L, G_N> + <a_R, H_N> + <x, H_d> + alpha h`` (additions only: a_L, a_R in {0, +-1})
   and ``S = <s_L, G_N> + <s_R, H_N> + <rho, G> + <rho', H_d> + rho_S h`` (uniform blinders).
2. V -> P: y, z, u, v, w; ``c_i = v^(i+1)``, ``e_i = w^(i+1)``, ``omega`` = ``c_i 2^k`` on bit k of entry
   i and 0 on slack bits, ``pi`` = ``2^k`` on slack bit k and 0 elsewhere.
3. Vectors, with ``p = z^3 e`` and ``q = -(z^2 c + z^3 e) / u``:

       l(X) = [ a_L - z 1 + s_L X ;  u x + p + rho X ]
       r(X) = [ y^N o (a_R + z 1 + s_R X) + z^2 omega + u pi ;  x + q + rho' X ]

   For an honest prover ``t(X) = <l(X), r(X)> = t0 + t1 X + t2 X^2`` with the public constant

       t0 = (z - z^2) <1, y^N> - z^3 (2^b - 1) sum c - z u (2^bs - 1) + z^2 2^(b-1) sum c + u B + <p, q>.

   P -> V: ``T1 = t1 g + tau1 h``, ``T2 = t2 g + tau2 h``. V -> P: X.
4. P -> V: ``tau_x = tau1 X + tau2 X^2``, ``mu = alpha + u r + rho_S X``, ``t_hat = <l(X), r(X)>``.
   V checks ``t_hat g + tau_x h = t0 g + X T1 + X^2 T2``; V -> P: w_U.
5. Inner-product argument (:mod:`ipa`) on ``l, r`` for
   ``P = A + u C + X S - z <1, G_N> + <p, G> + <z y^N + z^2 omega + u pi, H'_N> + <q, H_d> - mu h
   + t_hat w_U U`` with ``H'_N = y^-N o H_N``.

Soundness sketch: C enters with the challenge u, A (which the prover could fill with a ``delta`` on the
update generators) with 1. Expanding ``<l, r> = t0`` for the extracted openings gives, as a polynomial
identity in (y, z, u, v, w): coefficient of ``u^2``: ``<x, x'> + sigma - B = 0`` (x from C, x' the H_d part
of A); of ``u^0``: ``<delta, z^2 c + z^3 e> = 0`` so ``delta = 0``; of ``u^1``: the Bulletproofs range
constraints ``a_L o a_R = 0``, ``a_L - a_R = 1`` (powers of y, z^0 and z^1), the link
``sum_k 2^k a_(i,k) = x_i + 2^(b-1)`` (z^2 and powers of v: the bits compose to the entries of C) and
``x' = x`` (z^3 and powers of w). Hence every entry of C is in range and ``<x, x> = B - sigma <= B``.
Soundness is computational (discrete log in the order-l subgroup, independent generators) with error
O(N / l) per challenge (Schwartz-Zippel); Fiat-Shamir in the random-oracle model (:mod:`transcript`).
Zero-knowledge (honest-verifier, then non-interactive in the ROM): A, S, T1, T2 are perfectly hiding, l and
r are uniformly masked by s_L, s_R, rho, rho' before the (non-ZK) inner-product argument reveals them,
mu by rho_S, tau_x by tau1, tau2 -- as in Bulletproofs; t0 is public and carries no witness.

Costs (n = N + d = d (b + 1) + bs): the prover makes about ``2n`` (S) + ``6n`` (inner-product argument:
4n for L and R, 2n for the folds) scalar multiplications (exact count:
:meth:`NormBoundParams.scalar_mults`) and about ``N + d`` additions (A uses additions only); the verifier
(:mod:`verifier`) one MSM of size about ``2n``, and m proofs in a batch one MSM of size about
``2n + 45 m``. Both split their MSMs and folds over ``workers`` processes (:mod:`parallel`) with
byte-identical results. Proof: ``4 + 2 ceil(log2 n)`` points, 5 scalars and a version byte (1,569 bytes
at d = 61,706, b = 10). b comes from the fixed-point encoding, ``b = bitlen(ceil(clip 2^f)) + 1``; each
extra bit of precision adds d to n, i.e. about 8 d scalar multiplications to the prover.

Projection mode (``exact=False``, the default above a few entries, :mod:`projection`): the range-proven
values are the K projections ``z_k = <R_k, x>`` shifted by ``T = isqrt(d B)`` (bp bits each) instead of
the d entries, with R drawn from the transcript right after C; the link constraint uses ``R^T c`` in place
of ``c``, everything else is unchanged. The relation becomes ``||x||^2 <= B`` over the integers (which
bounds every entry by sqrt(B)) with soundness error ``2^-K`` plus the above; n = K bp + bs + d.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from secagg.normbound import ipa, projection
from secagg.normbound.errors import MalformedProof, WitnessError
from secagg.normbound.group import (
    L,
    add,
    decode_point,
    decode_scalar,
    msm,
    msm_small,
    random_scalar,
    random_scalars,
    scalar_bytes,
    smul,
    sub,
    sum_points,
)
from secagg.normbound.parallel import Workers
from secagg.normbound.params import NormBoundParams, ProofContext, _gens
from secagg.normbound.transcript import Transcript

VERSION = 1
PROOF_DOMAIN = b"fedsec/normbound/l2-proof/v1"


@dataclass(frozen=True)
class NormProof:
    """A norm-bound proof (see the module docstring for the messages)."""

    A: bytes
    S: bytes
    T1: bytes
    T2: bytes
    tau_x: int
    mu: int
    t_hat: int
    ipa: ipa.IPAProof

    def to_bytes(self) -> bytes:
        return (
            bytes([VERSION])
            + self.A
            + self.S
            + self.T1
            + self.T2
            + scalar_bytes(self.tau_x)
            + scalar_bytes(self.mu)
            + scalar_bytes(self.t_hat)
            + self.ipa.to_bytes()
        )

    @classmethod
    def from_bytes(cls, data: bytes, params: NormBoundParams) -> NormProof:
        """Decode and validate every point and scalar; raise :class:`MalformedProof` otherwise."""
        if not isinstance(data, bytes | bytearray):
            raise MalformedProof(f"norm proof: got {type(data).__name__}; want bytes")
        if len(data) != params.proof_size:
            raise MalformedProof(f"norm proof: got {len(data)} bytes; want {params.proof_size}")
        if data[0] != VERSION:
            raise MalformedProof(f"norm proof version: got {data[0]}; want {VERSION}")
        pts = [
            decode_point(bytes(data[1 + 32 * i : 33 + 32 * i]), ("A", "S", "T1", "T2")[i]) for i in range(4)
        ]
        sc = [
            decode_scalar(bytes(data[129 + 32 * i : 161 + 32 * i]), ("tau_x", "mu", "t_hat")[i])
            for i in range(3)
        ]
        proof = ipa.IPAProof.from_bytes(bytes(data[225:]), params.n)
        return cls(A=pts[0], S=pts[1], T1=pts[2], T2=pts[3], tau_x=sc[0], mu=sc[1], t_hat=sc[2], ipa=proof)


def _transcript(params: NormBoundParams, context: ProofContext, C: bytes) -> Transcript:
    t = Transcript(PROOF_DOMAIN)
    t.append(b"label", params.label.encode())
    t.append_int(b"d", params.d)
    t.append_int(b"entry_bits", params.entry_bits)
    t.append_int(b"slack_bits", params.slack_bits)
    t.append_int(b"bound", int(params.bound))
    if not params.is_exact:  # the exact transcript is unchanged (version 1 proofs)
        t.append_int(b"checks", params.checks)
    t.append(b"session", context.session)
    t.append_int(b"round", context.round)
    t.append_int(b"client", context.client)
    t.append(b"C", C)
    return t


@dataclass(frozen=True)
class _Challenges:
    y: int
    z: int
    u: int
    v: int
    w: int


def _powers(base: int, count: int, start: int = 0) -> list[int]:
    out = []
    cur = pow(base, start, L)
    for _ in range(count):
        out.append(cur)
        cur = cur * base % L
    return out


def _projections(params: NormBoundParams, t: Transcript) -> np.ndarray | None:
    """The projection matrix R (projection mode; None when exact), drawn from the transcript right
    after the statement and C, before the prover's first message."""
    if params.is_exact:
        return None
    seed = scalar_bytes(t.challenge(b"projections"))
    return projection.matrix(seed, params.checks, params.d)


def _public_vectors(params: NormBoundParams, ch: _Challenges, R: np.ndarray | None) -> dict[str, list[int]]:
    """The challenge-derived public vectors shared by prover and verifier. ``c`` has one power of v per
    range-proven value; ``link`` is its image on the entries: c itself (exact) or ``R^T c``."""
    d, b, bs = params.d, params.group_bits, params.slack_bits
    c = _powers(ch.v, params.groups, 1)
    link = c if R is None else projection.link_vector(R, c)
    e = _powers(ch.w, d, 1)
    z2, z3 = ch.z * ch.z % L, pow(ch.z, 3, L)
    two = [1 << k for k in range(b)]
    # z^2 omega + u pi on the bit positions
    extra = [z2 * ci % L * tk % L for ci in c for tk in two] + [ch.u * (1 << k) % L for k in range(bs)]
    u_inv = pow(ch.u, -1, L)
    p = [z3 * ei % L for ei in e]
    q = [-(z2 * ci + z3 * ei) * u_inv % L for ci, ei in zip(link, e)]
    return {"c": c, "e": e, "extra": extra, "p": p, "q": q}


def _t0(params: NormBoundParams, ch: _Challenges, pub: dict[str, list[int]]) -> int:
    y, z, u = ch.y, ch.z, ch.u
    n_bits = params.n_bits
    sum_y = n_bits if y == 1 else (pow(y, n_bits, L) - 1) * pow(y - 1, -1, L) % L
    sum_c = sum(pub["c"]) % L
    z2, z3 = z * z % L, pow(z, 3, L)
    b, bs = params.group_bits, params.slack_bits
    t0 = (z - z2) * sum_y - z3 * ((1 << b) - 1) * sum_c - z * u * ((1 << bs) - 1)
    t0 += z2 * params.group_offset * sum_c + u * int(params.bound)
    t0 += sum(pi * qi for pi, qi in zip(pub["p"], pub["q"]))
    return t0 % L


def _ip(a: Sequence[int], b: Sequence[int]) -> int:
    return sum(x * y for x, y in zip(a, b)) % L


def _as_int_vector(x: np.ndarray | Sequence[int], d: int) -> np.ndarray:
    v = np.asarray(x)
    if v.shape != (d,):
        raise WitnessError(f"witness: got a vector of shape {v.shape}; want ({d},)")
    if v.dtype.kind not in "iu":
        raise WitnessError(f"witness: got dtype {v.dtype}; want integers")
    return v.astype(np.int64)


def check_witness(params: NormBoundParams, x: np.ndarray | Sequence[int]) -> None:
    """Raise :class:`WitnessError` unless every entry is in range and ``||x||^2 <= B``."""
    v = _as_int_vector(x, params.d)
    lo, hi = -params.offset, params.offset
    bad = np.flatnonzero((v < lo) | (v >= hi)) if params.is_exact else np.zeros(0, dtype=np.int64)
    if bad.size:
        i = int(bad[0])
        raise WitnessError(f"entry {i}: got {int(v[i])}; want in [{lo}, {hi}) (b = {params.entry_bits})")
    s = sum(int(t) * int(t) for t in v)
    if s > params.bound:
        raise WitnessError(f"squared norm: got {s}; want <= bound {params.bound}")


def prove(
    params: NormBoundParams,
    x: np.ndarray | Sequence[int],
    r: int,
    C: bytes,
    context: ProofContext,
    workers: int | None = None,
) -> NormProof:
    """Prove that ``C = <x, G> + r h`` opens to a vector with in-range entries and ``||x||^2 <= B``.

    ``workers``: processes that share the proof's scalar multiplications (:mod:`parallel`; ``None``:
    one per CPU core, 1 inside a child process); the proof is the same for every value.

    Raises:
        WitnessError: the statement is false (no honest proof exists); nothing is computed.
    """
    check_witness(params, x)
    if not params.key.opens(C, _as_int_vector(x, params.d), r):
        raise WitnessError("commitment: got C that does not open to (x, r); want C = <x, G> + r h")
    return _prove_unchecked(params, _as_int_vector(x, params.d), r, C, context, workers=workers)


def commit_and_prove(
    params: NormBoundParams, x: np.ndarray | Sequence[int], context: ProofContext, workers: int | None = None
) -> tuple[bytes, int, NormProof]:
    """Commit to ``x`` with a fresh blinding factor and prove the bound: ``(C, r, proof)`` (``workers``
    as in :func:`prove`)."""
    check_witness(params, x)
    v = _as_int_vector(x, params.d)
    r = random_scalar()
    C = params.key.commit(v, r)
    return C, r, _prove_unchecked(params, v, r, C, context, workers=workers)


def _bit_vector(params: NormBoundParams, xs: list[int], xr: list[int], R: np.ndarray | None) -> np.ndarray:
    """a_L: the bits of the range-proven values (x_i or z_k = <R_k, x>, shifted by the group offset; low
    b bits each) and of sigma = B - <x, x_r> (low bs bits, mod l)."""
    b, bs = params.group_bits, params.slack_bits
    vals = xs if R is None else projection.project(R, xs)
    if all(-(2**40) < t < 2**40 for t in vals):
        v = (np.asarray(vals, dtype=np.int64) + params.group_offset) & ((1 << b) - 1)
        bits_x = ((v.astype(np.uint64)[:, None] >> np.arange(b, dtype=np.uint64)) & np.uint64(1)).ravel()
    else:
        off = params.group_offset
        bits_x = np.array([((t + off) % L >> k) & 1 for t in vals for k in range(b)], dtype=np.uint64)
    sigma = (int(params.bound) - sum(t * u for t, u in zip(xs, xr))) % L
    bits_s = np.array([(sigma >> k) & 1 for k in range(bs)], dtype=np.uint64)
    return np.concatenate([bits_x, bits_s]).astype(np.int64)


def _prove_unchecked(
    params: NormBoundParams,
    x: np.ndarray | Sequence[int],
    r: int,
    C: bytes,
    context: ProofContext,
    x_right: Sequence[int] | None = None,
    projections: np.ndarray | None = None,
    workers: int | None = None,
) -> NormProof:
    """The prover's computation without the witness check. Tests use it as a cheating prover: with a
    false statement the bits it commits cannot satisfy every constraint and the proof is rejected.
    ``x_right`` replaces x in the right-hand x block (a cheater proving <x, x'> <= B for some x' != x);
    ``projections`` replaces the Fiat-Shamir matrix R (a cheater who picked R before committing)."""
    t = _transcript(params, context, C)
    R = _projections(params, t)
    if projections is not None:
        R = projections
    xs = [int(t) for t in x]  # an object array of huge Python ints is allowed here (cheating tests)
    xr = xs if x_right is None else [int(t) for t in x_right]
    a_l = _bit_vector(params, xs, xr, R)
    with Workers(workers) as pool:
        return _prove_messages(params, t, R, xs, xr, x_right is not None, a_l, r, pool)


def _prove_messages(
    params: NormBoundParams,
    t: Transcript,
    R: np.ndarray | None,
    xs: list[int],
    xr: list[int],
    cheat_right: bool,
    a_l: np.ndarray,
    r: int,
    pool: Workers,
) -> NormProof:
    """The prover's messages A, S, T1, T2, the scalars and the inner-product argument (module
    docstring, steps 1-5), the scalar multiplications split over ``pool``."""
    d, n_bits = params.d, params.n_bits
    gens = _gens(params)
    small = not cheat_right and all(-(2**40) < v < 2**40 for v in xs)
    alpha, rho_s, tau1, tau2 = random_scalars(4)
    s_l = random_scalars(n_bits)
    s_r = random_scalars(n_bits)
    rho = random_scalars(d)
    rho_p = random_scalars(d)
    ones = np.flatnonzero(a_l == 1)
    zeros = np.flatnonzero(a_l == 0)
    A = sub(sum_points(gens.G_N[i] for i in ones), sum_points(gens.H_N[i] for i in zeros))
    A = add(A, msm_small(np.asarray(xs), gens.H_d) if small else msm(xr, gens.H_d))
    A = add(A, smul(alpha, gens.h))
    S = pool.msm([*s_l, *s_r, *rho, *rho_p, rho_s], [*gens.G_N, *gens.H_N, *gens.G, *gens.H_d, gens.h])

    t.append(b"A", A)
    t.append(b"S", S)
    ch = _Challenges(*(t.challenge(lab) for lab in (b"y", b"z", b"u", b"v", b"w")))
    pub = _public_vectors(params, ch, R)
    y, z, u = ch.y, ch.z, ch.u
    ypow = _powers(y, n_bits)
    al = [int(a) for a in a_l]
    l0 = [(a - z) % L for a in al] + [(u * xi + pi) % L for xi, pi in zip(xs, pub["p"])]
    l1 = [*s_l, *rho]
    r0 = [(yp * (a - 1 + z) + ex) % L for yp, a, ex in zip(ypow, al, pub["extra"])] + [
        (xi + qi) % L for xi, qi in zip(xr, pub["q"])
    ]
    r1 = [yp * sr % L for yp, sr in zip(ypow, s_r)] + rho_p
    t1 = (_ip(l0, r1) + _ip(l1, r0)) % L
    t2 = _ip(l1, r1)
    T1 = add(smul(t1, gens.g), smul(tau1, gens.h))
    T2 = add(smul(t2, gens.g), smul(tau2, gens.h))
    t.append(b"T1", T1)
    t.append(b"T2", T2)
    X = t.challenge(b"x")
    lv = [(a + X * c) % L for a, c in zip(l0, l1)]
    rv = [(a + X * c) % L for a, c in zip(r0, r1)]
    t_hat = _ip(lv, rv)
    tau_x = (tau1 * X + tau2 * X * X) % L
    mu = (alpha + u * r + rho_s * X) % L
    t.append_scalar(b"tau_x", tau_x)
    t.append_scalar(b"mu", mu)
    t.append_scalar(b"t_hat", t_hat)
    w_u = t.challenge(b"w_u")
    y_inv = pow(y, -1, L)
    scale = _powers(y_inv, n_bits) + [1] * d
    U = smul(w_u, gens.U)
    proof = ipa.prove(t, [*gens.G_N, *gens.G], [*gens.H_N, *gens.H_d], U, lv, rv, scale, pool)
    return NormProof(A=A, S=S, T1=T1, T2=T2, tau_x=tau_x, mu=mu, t_hat=t_hat, ipa=proof)


def forge_proof(
    params: NormBoundParams,
    x: np.ndarray | Sequence[int],
    r: int,
    C: bytes,
    context: ProofContext,
    workers: int | None = None,
) -> NormProof:
    """What a client whose vector violates the statement can still send: the prover's computation on its
    actual ``(x, r)`` without the witness check. Simulations use it for Byzantine clients (a scaled or
    large-norm update); :func:`verify` rejects the result whenever the statement is false (soundness)."""
    return _prove_unchecked(params, x, r, C, context, workers=workers)


__all__ = [
    "NormBoundParams",
    "NormProof",
    "ProofContext",
    "check_witness",
    "commit_and_prove",
    "forge_proof",
    "prove",
]
