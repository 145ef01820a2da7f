"""Verification of norm-bound proofs, one at a time or many in one multi-scalar multiplication.

A proof's two checks (the t polynomial and the inner-product argument, see :mod:`normproof`) are
merged into one MSM with a random weight ``beta``; a batch of proofs with the same parameters is merged
further, proof j weighted by a random ``alpha_j``: the generators' coefficients add up, so m proofs
cost one MSM of size about ``2n + m (2 ceil(log2 n) + 9)`` instead of m MSMs of size 2n. The weights
come from libsodium and are unknown to the provers, so a batch with a false proof passes with
probability at most 1/l per weight (random linear combination; Bellare, Garay and Rabin, EUROCRYPT
1998, small-exponent test with full-size exponents). A failing batch is re-checked proof by proof to
name the culprits.

Several cores (``workers``, :mod:`parallel`): the final MSM is split over a process pool, and in a batch
each proof's scalars (the transcript replay and the unrolled folds, about a second of Python arithmetic
per proof at d = 61,706) are computed one proof per task. The weights ``alpha_j`` and ``beta_j`` are drawn
in the calling process; the outcome does not depend on the number of workers.
"""

from __future__ import annotations

from collections.abc import Sequence

from secagg.errors import ProtocolAbort
from secagg.normbound import ipa
from secagg.normbound.errors import MalformedProof, ProofRejected
from secagg.normbound.group import IDENTITY, L, decode_point, random_scalar
from secagg.normbound.normproof import (
    NormBoundParams,
    NormProof,
    ProofContext,
    _Challenges,
    _powers,
    _projections,
    _public_vectors,
    _t0,
    _transcript,
)
from secagg.normbound.parallel import Workers
from secagg.normbound.params import _Gens, _gens


def _decode(params: NormBoundParams, C: bytes, proof: NormProof | bytes) -> tuple[bytes, NormProof]:
    C = decode_point(C, "commitment C")
    pf = NormProof.from_bytes(proof, params) if isinstance(proof, bytes | bytearray) else proof
    if not isinstance(pf, NormProof):
        raise MalformedProof(f"norm proof: got {type(proof).__name__}; want NormProof or bytes")
    return C, pf


def _terms(
    params: NormBoundParams,
    gens: _Gens,
    C: bytes,
    pf: NormProof,
    context: ProofContext,
    alpha: int,
    beta: int,
) -> tuple[list[int], list[tuple[int, bytes]]]:
    """``alpha`` times the check's scalars: those of the shared generators (G_N, G, H_N, H_d, h, U, g,
    in that order) and the proof's own points (A, C, S, T1, T2, L_k, R_k). The check is that the MSM of
    all of them is the identity."""
    n_bits = params.n_bits
    t = _transcript(params, context, C)
    R = _projections(params, t)
    t.append(b"A", pf.A)
    t.append(b"S", pf.S)
    ch = _Challenges(*(t.challenge(lab) for lab in (b"y", b"z", b"u", b"v", b"w")))
    pub = _public_vectors(params, ch, R)
    t.append(b"T1", pf.T1)
    t.append(b"T2", pf.T2)
    X = t.challenge(b"x")
    t.append_scalar(b"tau_x", pf.tau_x)
    t.append_scalar(b"mu", pf.mu)
    t.append_scalar(b"t_hat", pf.t_hat)
    w_u = t.challenge(b"w_u")
    chk = ipa.verifier_check(t, pf.ipa, params.n)

    z, u = ch.z, ch.u
    t0 = _t0(params, ch, pub)
    yinv_pow = _powers(pow(ch.y, -1, L), n_bits)
    a_star, b_star = chk.a, chk.b
    # (P' - IPA right-hand side) on G_N, G, H_N, H_d, then h, U, g.
    fixed = [
        *((-z - a_star * gi) * alpha % L for gi in chk.g[:n_bits]),
        *((pi - a_star * gi) * alpha % L for pi, gi in zip(pub["p"], chk.g[n_bits:])),
        *(
            (z + (ex - b_star * hi) * yi) * alpha % L
            for ex, hi, yi in zip(pub["extra"], chk.h[:n_bits], yinv_pow)
        ),
        *((qi - b_star * hi) * alpha % L for qi, hi in zip(pub["q"], chk.h[n_bits:])),
        (beta * pf.tau_x - pf.mu) * alpha % L,
        (pf.t_hat - a_star * b_star) * w_u * alpha % L,
        beta * (pf.t_hat - t0) * alpha % L,
    ]
    own = [
        (alpha, pf.A),
        (u * alpha % L, C),
        (X * alpha % L, pf.S),
        (-beta * X * alpha % L, pf.T1),
        (-beta * X * X * alpha % L, pf.T2),
        *((-c * alpha % L, p) for c, p in chk.terms),
    ]
    return fixed, own


def _terms_job(
    job: tuple[NormBoundParams, bytes, NormProof, ProofContext, int, int],
) -> tuple[list[int], list[tuple[int, bytes]]]:
    params, C, pf, ctx, alpha, beta = job
    return _terms(params, _gens(params), C, pf, ctx, alpha, beta)


def _shared_points(gens: _Gens) -> list[bytes]:
    return [*gens.G_N, *gens.G, *gens.H_N, *gens.H_d, gens.h, gens.U, gens.g]


def _reject(params: NormBoundParams, context: ProofContext) -> ProofRejected:
    return ProofRejected(
        f"norm proof for client {context.client}, round {context.round}: got a failing check; want a "
        f"proof that C opens to x with {params.entry_bits}-bit entries and ||x||^2 <= {params.bound}"
    )


def verify(
    params: NormBoundParams,
    C: bytes,
    proof: NormProof | bytes,
    context: ProofContext,
    workers: int | None = None,
) -> None:
    """Verify a proof for commitment ``C`` in ``context``; return ``None`` or raise. ``workers``:
    processes that share the final MSM (:mod:`parallel`; ``None``: one per CPU core, 1 inside a child
    process); the outcome is the same for every value.

    Raises:
        MalformedProof: undecodable proof, invalid point (small order, non-canonical) or scalar >= l.
        ProofRejected: the proof does not verify for this statement and context.
    """
    Cp, pf = _decode(params, C, proof)
    with Workers(workers) as pool:
        _check_one(params, Cp, pf, context, pool)


def _check_one(
    params: NormBoundParams, C: bytes, pf: NormProof, context: ProofContext, pool: Workers
) -> None:
    gens = _gens(params)
    fixed, own = _terms(params, gens, C, pf, context, 1, random_scalar() or 1)
    if pool.msm(fixed + [c for c, _ in own], _shared_points(gens) + [p for _, p in own]) != IDENTITY:
        raise _reject(params, context)


def verify_batch(
    params: NormBoundParams,
    items: Sequence[tuple[bytes, NormProof | bytes, ProofContext]],
    workers: int | None = None,
) -> list[ProtocolAbort | None]:
    """Verify many proofs (same parameters) in one MSM; per item ``None`` (valid) or the typed error
    (:class:`MalformedProof` or :class:`ProofRejected`) that :func:`verify` would raise. ``workers`` as
    in :func:`verify`."""
    out: list[ProtocolAbort | None] = [None] * len(items)
    decoded: list[tuple[int, bytes, NormProof, ProofContext]] = []
    for j, (C, proof, ctx) in enumerate(items):
        try:
            Cp, pf = _decode(params, C, proof)
        except ProtocolAbort as e:
            out[j] = e
            continue
        decoded.append((j, Cp, pf, ctx))
    if not decoded:
        return out
    gens = _gens(params)  # before the pool starts: forked workers inherit the generators
    # the weights come from the verifier's CSPRNG in this process; a pool computes the proofs' terms
    jobs = [(params, Cp, pf, ctx, random_scalar() or 1, random_scalar() or 1) for _, Cp, pf, ctx in decoded]
    with Workers(workers) as pool:
        parts = pool.map(_terms_job, jobs, min_total=len(jobs) * params.n)
        total = [sum(col) % L for col in zip(*(fixed for fixed, _ in parts))]
        own_all = [term for _, own in parts for term in own]
        scalars = total + [c for c, _ in own_all]
        if pool.msm(scalars, _shared_points(gens) + [p for _, p in own_all]) == IDENTITY:
            return out
        if len(decoded) == 1:
            out[decoded[0][0]] = _reject(params, decoded[0][3])
            return out
        for j, Cp, pf, ctx in decoded:
            try:
                _check_one(params, Cp, pf, ctx, pool)
            except ProtocolAbort as e:
                out[j] = e
    return out


__all__ = ["verify", "verify_batch"]
