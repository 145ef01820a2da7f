"""The zero-knowledge L2 norm-bound proof: completeness, soundness against cheating provers (over the
bound, out-of-range entries, entries whose squares wrap mod l), tampering, replay and malformed input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from normbound_cheats import cheat, wrapping_vector

from secagg.errors import ProtocolAbort
from secagg.normbound import (
    MalformedProof,
    NormBoundParams,
    NormProof,
    ParameterError,
    ProofContext,
    ProofRejected,
    WitnessError,
    commit_and_prove,
    normproof,
    prove,
    verify,
    verify_batch,
)
from secagg.normbound import generators as gg
from secagg.normbound import group as g

PARAMS = NormBoundParams(d=4, entry_bits=4, bound=30)
CTX = ProofContext(session=b"session-1", round=3, client=7)
X = np.array([3, -4, 2, -1])  # ||x||^2 = 30 = B: exactly at the bound


@pytest.fixture(scope="module")
def honest() -> tuple[bytes, int, NormProof]:
    return commit_and_prove(PARAMS, X, CTX)


def test_honest_proof_verifies_and_round_trips(honest: tuple[bytes, int, NormProof]) -> None:
    C, r, proof = honest
    assert PARAMS.key.opens(C, X, r)
    data = proof.to_bytes()
    assert len(data) == PARAMS.proof_size
    assert NormProof.from_bytes(data, PARAMS) == proof
    verify(PARAMS, C, data, CTX)
    verify(PARAMS, C, proof, CTX)


@settings(max_examples=6, deadline=None)
@given(data=st.data(), d=st.integers(1, 5), b=st.integers(2, 5))
def test_completeness_below_and_at_bound(data: st.DataObject, d: int, b: int) -> None:
    half = 1 << (b - 1)
    x = np.array(data.draw(st.lists(st.integers(-half, half - 1), min_size=d, max_size=d)))
    s = int((x * x).sum())
    bound = s + data.draw(st.integers(0, 50))
    params = NormBoundParams(d=d, entry_bits=b, bound=bound)
    C, _, proof = commit_and_prove(params, x, CTX)
    verify(params, C, proof.to_bytes(), CTX)


def test_completeness_at_the_extremes() -> None:
    params = NormBoundParams(d=3, entry_bits=3, bound=3 * 16)
    x = np.array([-4, -4, -4])  # the most negative entry, the largest norm the entry bits allow
    C, _, proof = commit_and_prove(params, x, CTX)
    verify(params, C, proof, CTX)
    zero = NormBoundParams(d=2, entry_bits=2, bound=0)
    C, _, proof = commit_and_prove(zero, np.zeros(2, dtype=np.int64), CTX)
    verify(zero, C, proof, CTX)


# --- the honest prover refuses false statements ------------------------------------------------


def test_prover_refuses_false_statements() -> None:
    over = np.array([5, 2, 1, 1])  # ||x||^2 = 31 = B + 1
    with pytest.raises(WitnessError, match="squared norm: got 31; want <= bound 30"):
        commit_and_prove(PARAMS, over, CTX)
    with pytest.raises(WitnessError, match=r"entry 1: got 8; want in \[-8, 8\)"):
        commit_and_prove(PARAMS, np.array([0, 8, 0, 0]), CTX)
    C = PARAMS.key.commit(X, 5)
    with pytest.raises(WitnessError, match="does not open"):
        prove(PARAMS, X, 6, C, CTX)
    with pytest.raises(WitnessError, match="want integers"):
        commit_and_prove(PARAMS, np.array([0.5, 0, 0, 0]), CTX)
    with pytest.raises(WitnessError, match=r"want \(4,\)"):
        commit_and_prove(PARAMS, np.array([1, 1, 1]), CTX)


# --- a cheating prover that skips the checks is rejected -------------------------------------------


def _cheat(x: list[int], params: NormBoundParams = PARAMS) -> tuple[bytes, NormProof]:
    return cheat(params, CTX, x)


@pytest.mark.parametrize(
    "x",
    [
        [5, 2, 1, 1],  # one over the bound
        [7, -7, 7, -7],  # far over the bound, entries in range
        [0, 8, 0, 0],  # an entry just out of range (its bits wrap to -8)
        [16, 0, 0, 0],  # out of range, low bits look like 0
        [-9, 0, 0, 0],
    ],
)
def test_cheating_prover_is_rejected(x: list[int]) -> None:
    C, proof = _cheat(x)
    with pytest.raises(ProofRejected):
        verify(PARAMS, C, proof.to_bytes(), CTX)


def test_cheater_pairing_x_with_another_vector_is_rejected() -> None:
    """||x||^2 = 196 > B but <x, x'> = 0 for x' = (1, 1, 0, 0): only the equality constraint x' = x
    (challenge w) stops this proof."""
    x = [7, -7, 7, -7]
    r = g.random_scalar()
    C = PARAMS.key.commit(np.array(x), r)
    proof = normproof._prove_unchecked(PARAMS, np.array(x), r, C, CTX, x_right=[1, 1, 0, 0])
    with pytest.raises(ProofRejected):
        verify(PARAMS, C, proof, CTX)
    honest_path = normproof._prove_unchecked(PARAMS, X, r, PARAMS.key.commit(X, r), CTX, x_right=list(X))
    verify(PARAMS, PARAMS.key.commit(X, r), honest_path, CTX)


def test_wrapping_entries_are_rejected() -> None:
    """Entries of size ~l whose squares sum to 9 mod l: <x, x> = 9 <= B holds modulo l, the integer
    norm is astronomically larger; the entry range proof must catch it."""
    x = wrapping_vector(seed=0)
    assert sum(t * t for t in x) % g.L == 9
    C, proof = _cheat(x)
    with pytest.raises(ProofRejected):
        verify(PARAMS, C, proof, CTX)


# --- tampering, wrong statements, replay ----------------------------------------------------------


def test_tampered_elements_are_rejected(honest: tuple[bytes, int, NormProof]) -> None:
    C, _, proof = honest
    other = gg.generator("tamper", "P", 0)
    ipa_pf = proof.ipa
    variants = [
        dataclasses.replace(proof, A=other),
        dataclasses.replace(proof, S=other),
        dataclasses.replace(proof, T1=other),
        dataclasses.replace(proof, T2=other),
        dataclasses.replace(proof, tau_x=(proof.tau_x + 1) % g.L),
        dataclasses.replace(proof, mu=(proof.mu + 1) % g.L),
        dataclasses.replace(proof, t_hat=(proof.t_hat + 1) % g.L),
        dataclasses.replace(proof, ipa=dataclasses.replace(ipa_pf, a=(ipa_pf.a + 1) % g.L)),
        dataclasses.replace(proof, ipa=dataclasses.replace(ipa_pf, L=(other, *ipa_pf.L[1:]))),
        dataclasses.replace(proof, A=proof.S, S=proof.A),
    ]
    for v in variants:
        with pytest.raises(ProofRejected):
            verify(PARAMS, C, v.to_bytes(), CTX)


def test_wrong_commitment_and_statement_are_rejected(honest: tuple[bytes, int, NormProof]) -> None:
    C, r, proof = honest
    for wrong_c in (PARAMS.key.commit(X, r + 1), PARAMS.key.commit(np.array([3, -4, 2, 1]), r)):
        with pytest.raises(ProofRejected):
            verify(PARAMS, wrong_c, proof, CTX)
    for params in (
        NormBoundParams(d=4, entry_bits=4, bound=31),  # same proof length, other bound
        NormBoundParams(d=4, entry_bits=4, bound=30, label="other-setup"),
    ):
        assert params.proof_size == PARAMS.proof_size
        with pytest.raises(ProtocolAbort):
            verify(params, C, proof.to_bytes(), CTX)


@pytest.mark.parametrize(
    "ctx",
    [
        ProofContext(session=b"session-1", round=3, client=8),  # another client replays it
        ProofContext(session=b"session-1", round=4, client=7),  # a later round
        ProofContext(session=b"session-2", round=3, client=7),  # another session
    ],
)
def test_replayed_proof_is_rejected(honest: tuple[bytes, int, NormProof], ctx: ProofContext) -> None:
    C, _, proof = honest
    with pytest.raises(ProofRejected):
        verify(PARAMS, C, proof.to_bytes(), ctx)


SMALL_ORDER = bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")


@pytest.mark.parametrize("slot", range(4))
def test_small_order_points_in_the_proof_are_malformed(
    honest: tuple[bytes, int, NormProof], slot: int
) -> None:
    C, _, proof = honest
    data = bytearray(proof.to_bytes())
    data[1 + 32 * slot : 33 + 32 * slot] = SMALL_ORDER
    with pytest.raises(MalformedProof, match="invalid point"):
        verify(PARAMS, C, bytes(data), CTX)


def test_malformed_encodings(honest: tuple[bytes, int, NormProof]) -> None:
    C, _, proof = honest
    data = proof.to_bytes()
    cases = {
        "invalid point": data[: -64 - 32] + b"\x01" + bytes(31) + data[-64:],  # last IPA R is the identity
        "non-canonical": data[:129] + g.L.to_bytes(32, "little") + data[161:],  # tau_x = l
        "version": b"\x02" + data[1:],
        "bytes; want": data[:-1],
    }
    for msg, bad in cases.items():
        with pytest.raises(MalformedProof, match=msg):
            verify(PARAMS, C, bad, CTX)
    with pytest.raises(MalformedProof, match="commitment C"):
        verify(PARAMS, SMALL_ORDER, data, CTX)
    with pytest.raises(MalformedProof):
        verify(PARAMS, C, "not bytes", CTX)  # type: ignore[arg-type]


# --- parameters and costs -------------------------------------------------------------------------


def test_parameter_validation() -> None:
    with pytest.raises(ParameterError, match="want < l"):
        NormBoundParams(d=1, entry_bits=4, bound=2**252)
    for kw, msg in (
        ({"d": 0}, "d: got 0; want >= 1"),
        ({"entry_bits": 1}, r"want in \[2, 32\]"),
        ({"entry_bits": 33}, r"want in \[2, 32\]"),
        ({"bound": -1}, "want >= 0"),
        ({"d": 2.0}, "want an int"),
        ({"label": ""}, "non-empty"),
    ):
        args: dict[str, object] = {"d": 2, "entry_bits": 4, "bound": 10, **kw}
        with pytest.raises(ParameterError, match=msg):
            NormBoundParams(**args)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="session"):
        ProofContext(session=b"", round=0, client=0)
    with pytest.raises(ParameterError, match="client"):
        ProofContext(session=b"s", round=0, client=-1)


def test_proof_size_is_logarithmic() -> None:
    sizes = {d: NormBoundParams(d=d, entry_bits=10, bound=2**24).proof_size for d in (1000, 10_000, 61_706)}
    assert sizes[61_706] <= 3 * 1024
    assert sizes[61_706] - sizes[1000] <= 2 * 32 * 6  # log2(61706/1000) < 6 extra rounds


def test_scalar_multiplication_count_matches_the_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    params = NormBoundParams(d=3, entry_bits=3, bound=20)
    x = np.array([1, -2, 3])
    r = g.random_scalar()
    C = params.key.commit(x, r)
    count = {"n": 0}
    real = g._smul

    def counting(k: bytes, p: bytes) -> bytes:
        count["n"] += 1
        return real(k, p)

    monkeypatch.setattr(g, "_smul", counting)
    proof = normproof._prove_unchecked(params, x, r, C, CTX)
    proved = count["n"]
    count["n"] = 0
    verify(params, C, proof, CTX)
    floor = params.scalar_mults()
    assert proved == floor["prove"]
    assert count["n"] <= floor["verify"] and count["n"] >= floor["verify"] - 8


def test_batch_verification_names_the_bad_proofs(honest: tuple[bytes, int, NormProof]) -> None:
    C, _, proof = honest
    ctx2 = ProofContext(session=b"session-1", round=3, client=8)
    C2, _, proof2 = commit_and_prove(PARAMS, np.array([1, 1, -1, 0]), ctx2)
    good = [(C, proof.to_bytes(), CTX), (C2, proof2, ctx2)]
    assert verify_batch(PARAMS, good) == [None, None]
    bad_c, forged = _cheat([7, -7, 7, -7])
    items = [*good, (C, proof, ctx2), (SMALL_ORDER, proof, CTX), (bad_c, forged, CTX)]
    errors = verify_batch(PARAMS, items)
    assert errors[:2] == [None, None]
    assert isinstance(errors[2], ProofRejected) and isinstance(errors[4], ProofRejected)
    assert isinstance(errors[3], MalformedProof)
    assert verify_batch(PARAMS, []) == []
    assert isinstance(verify_batch(PARAMS, [(bad_c, forged, CTX)])[0], ProofRejected)
