"""Projection (wraparound) checks of the norm-bound proof: completeness, and the attacks they must stop
-- a vector whose squares wrap modulo l, a vector just over the bound, a prover who fixes the projections
before committing -- plus known-answer vectors for the projection transcript."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from normbound_cheats import cheat, sqrt_mod_l, wrapping_vector

from secagg.errors import ProtocolAbort
from secagg.normbound import (
    NormBoundParams,
    ParameterError,
    ProofContext,
    ProofRejected,
    commit_and_prove,
    normproof,
    projection,
    verify,
    verify_batch,
)
from secagg.normbound import group as g

PARAMS = NormBoundParams(d=4, entry_bits=4, bound=30, exact=False, checks=40)
CTX = ProofContext(session=b"session-1", round=3, client=7)


def _centered(t: int) -> int:
    t %= g.L
    return t - g.L if t > g.L // 2 else t


def _cheat(
    x: list[int], params: NormBoundParams = PARAMS, R: np.ndarray | None = None
) -> tuple[bytes, normproof.NormProof]:
    return cheat(params, CTX, x, R)


def test_parameters_and_layout() -> None:
    assert not PARAMS.is_exact and PARAMS.groups == 40
    assert PARAMS.group_offset == 10 and PARAMS.group_bits == 5  # T = isqrt(4 * 30), bitlen(20)
    assert PARAMS.n_bits == 40 * 5 + 5 and PARAMS.n == PARAMS.n_bits + 4
    big = NormBoundParams(d=61_706, entry_bits=10, bound=2**16)
    assert not big.is_exact and big.n_bits == 80 * 17 + 17  # vs d b = 617,060 bit wires
    assert NormBoundParams(d=4, entry_bits=4, bound=30).is_exact  # fewer wires at tiny d
    assert projection.soundness_error(80) == 2.0**-80 <= 2.0**-64
    assert projection.soundness_error(80, queries=2**16) == 2.0**-64
    for kw, msg in (
        ({"checks": 0}, r"want an int in \[1, 256\]"),
        ({"exact": 1}, "want True, False or None"),
    ):
        with pytest.raises(ParameterError, match=msg):
            NormBoundParams(d=2, entry_bits=4, bound=10, **kw)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="want < l"):
        NormBoundParams(d=2**40, entry_bits=4, bound=2**200, exact=False)


@settings(max_examples=4, deadline=None)
@given(data=st.data(), d=st.integers(1, 6))
def test_completeness(data: st.DataObject, d: int) -> None:
    x = np.array(data.draw(st.lists(st.integers(-20, 20), min_size=d, max_size=d)))
    bound = int((x * x).sum()) + data.draw(st.integers(0, 30))
    params = NormBoundParams(d=d, entry_bits=8, bound=bound, exact=False, checks=8)
    C, _, proof = commit_and_prove(params, x, CTX)
    verify(params, C, proof.to_bytes(), CTX)
    assert len(proof.to_bytes()) == params.proof_size


def test_completeness_at_the_extreme_projection() -> None:
    """All weight on one entry: |<R_k, x>| reaches ||x||_1 = T exactly when R_k hits it."""
    params = NormBoundParams(d=1, entry_bits=8, bound=49, exact=False, checks=16)
    for x in ([7], [-7]):
        C, _, proof = commit_and_prove(params, np.array(x), CTX)
        verify(params, C, proof, CTX)


def test_wrapping_vector_is_rejected() -> None:
    """Entries ~2^240 whose squares sum to 9 mod l (the modular norm equation alone accepts it)."""
    x = wrapping_vector(seed=1)
    assert sum(t * t for t in x) % g.L == 9
    C, proof = _cheat(x)
    with pytest.raises(ProofRejected):
        verify(PARAMS, C, proof, CTX)


def test_vector_just_over_the_bound_is_rejected() -> None:
    C, proof = _cheat([5, 2, 1, 1])  # ||x||^2 = 31 = B + 1, every projection in range
    with pytest.raises(ProofRejected):
        verify(PARAMS, C, proof, CTX)
    C, proof = _cheat([3, -4, 2, -1])  # the same prover code at ||x||^2 = B is accepted
    verify(PARAMS, C, proof, CTX)


def test_projections_chosen_before_committing_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    """The attacker fixes R' first (rows (1, -1, 0, 0) and zeros), then commits to x = (a, a, 0, 0)
    with a huge a and 2 a^2 = s <= B mod l: R' x = 0, so every check on R' passes and the norm equation
    holds mod l. Verified against R', the forgery passes (the attack is real); against the Fiat-Shamir
    R it fails (a random row has R_1 + R_2 != 0 with probability 5/8)."""
    for s in range(1, 31):
        a = sqrt_mod_l(s * pow(2, -1, g.L))
        if a is not None and abs(_centered(a)) > 2**200:
            break
    assert a is not None
    x = [a, a, 0, 0]
    R = np.zeros((PARAMS.checks, 4), dtype=np.int8)
    R[::2, 0], R[::2, 1] = 1, -1
    C, forged = _cheat(x, R=R)
    with pytest.raises(ProofRejected):
        verify(PARAMS, C, forged, CTX)
    monkeypatch.setattr(normproof.projection, "matrix", lambda seed, checks, d: R)
    verify(PARAMS, C, forged, CTX)  # only the choice of R after C stops it
    assert verify_batch(PARAMS, [(C, forged, CTX)]) == [None]


def test_projection_matrix_known_answer() -> None:
    seed = b"kat-seed"
    R = projection.matrix(seed, 3, 5)
    raw = hashlib.shake_256(len(projection.PROJ_DOMAIN).to_bytes(8, "little") + projection.PROJ_DOMAIN + seed)
    bits = raw.digest(4)
    expect = []
    for i in range(15):
        lo, hi = (bits[(2 * i) // 8] >> ((2 * i) % 8)) & 1, (bits[(2 * i + 1) // 8] >> ((2 * i + 1) % 8)) & 1
        expect.append(0 if lo == 0 else (1 if hi == 0 else -1))
    assert R.tolist() == np.array(expect).reshape(3, 5).tolist()
    assert R.tolist() == [[1, -1, -1, 1, 0], [0, 1, 1, 0, 0], [0, 0, 0, 1, 0]]
    assert projection.matrix(b"kat-seeD", 3, 5).tolist() != R.tolist()
    big = projection.matrix(seed, 64, 1000)
    assert abs(float((big == 0).mean()) - 0.5) < 0.02 and abs(int(big.sum())) < 1000


def _transcript_matrix(params: NormBoundParams, ctx: ProofContext, C: bytes) -> list[list[int]]:
    R = normproof._projections(params, normproof._transcript(params, ctx, C))
    assert R is not None
    return R.tolist()


def test_projection_transcript_known_answer_and_failing_cases() -> None:
    C = PARAMS.key.commit(np.array([3, -4, 2, -1]), 5)
    base = _transcript_matrix(PARAMS, CTX, C)
    digest = hashlib.sha256(np.array(base, dtype=np.int8).tobytes()).hexdigest()
    assert digest == KAT_DIGEST
    other_c = PARAMS.key.commit(np.array([3, -4, 2, -1]), 6)
    for params, ctx, c in (
        (PARAMS, CTX, other_c),  # another commitment
        (PARAMS, ProofContext(b"session-1", 3, 8), C),  # another client
        (PARAMS, ProofContext(b"session-1", 4, 7), C),  # another round
        (NormBoundParams(d=4, entry_bits=4, bound=31, exact=False, checks=40), CTX, C),  # other bound
    ):
        assert _transcript_matrix(params, ctx, c) != base
    more = NormBoundParams(d=4, entry_bits=4, bound=30, exact=False, checks=41)
    assert _transcript_matrix(more, CTX, C)[:40] != base  # the number of checks is in the statement


@settings(max_examples=20, deadline=None)
@given(
    seed=st.binary(min_size=1, max_size=8),
    k=st.integers(1, 6),
    d=st.integers(1, 7),
    v=st.integers(1, g.L - 1),
)
def test_link_vector_is_r_transpose_c(seed: bytes, k: int, d: int, v: int) -> None:
    R = projection.matrix(seed, k, d)
    c = [pow(v, j + 1, g.L) for j in range(k)]
    naive = [sum(c[j] * int(R[j, i]) for j in range(k)) % g.L for i in range(d)]
    assert projection.link_vector(R, c) == naive
    xs = [int(t) for t in np.arange(d) - 3]
    assert projection.project(R, xs) == [sum(int(R[j, i]) * xs[i] for i in range(d)) for j in range(k)]
    huge = [t * 2**100 for t in xs]
    assert projection.project(R, huge) == [sum(int(R[j, i]) * huge[i] for i in range(d)) for j in range(k)]


KAT_DIGEST = "57392b35bc997a836980e174269196690869692df158d34b89f8c4c2eae3a412"


def test_tampered_and_replayed_projection_proofs_are_rejected() -> None:
    x = np.array([3, -4, 2, -1])
    C, r, proof = commit_and_prove(PARAMS, x, CTX)
    verify(PARAMS, C, proof, CTX)
    for v in (
        dataclasses.replace(proof, t_hat=(proof.t_hat + 1) % g.L),
        dataclasses.replace(proof, A=proof.S, S=proof.A),
    ):
        with pytest.raises(ProofRejected):
            verify(PARAMS, C, v, CTX)
    for ctx in (ProofContext(b"session-1", 3, 8), ProofContext(b"session-2", 3, 7)):
        with pytest.raises(ProofRejected):
            verify(PARAMS, C, proof, ctx)
    with pytest.raises(ProofRejected):
        verify(PARAMS, PARAMS.key.commit(x, r + 1), proof, CTX)
    exact = dataclasses.replace(PARAMS, exact=True)  # the same vector under the other construction
    C2, _, proof2 = commit_and_prove(exact, x, CTX)
    verify(exact, C2, proof2, CTX)
    with pytest.raises(ProtocolAbort):
        verify(PARAMS, C2, proof2.to_bytes(), CTX)
