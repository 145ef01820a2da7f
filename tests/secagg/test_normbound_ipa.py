"""Inner-product argument of secagg.normbound: completeness for every length, rejection of tampering."""

from __future__ import annotations

import dataclasses

import pytest

from secagg.normbound import generators as gg
from secagg.normbound import group as g
from secagg.normbound import ipa
from secagg.normbound.errors import MalformedProof
from secagg.normbound.transcript import Transcript


def _instance(
    n: int, scaled: bool
) -> tuple[list[bytes], list[bytes], bytes, list[int], list[int], list[int] | None]:
    G = gg.generators("ipa-test", "G", n)
    H = gg.generators("ipa-test", "H", n)
    U = gg.generators("ipa-test", "U", 1)[0]
    a = g.random_scalars(n)
    b = g.random_scalars(n)
    s = [pow(7, -i, g.L) for i in range(n)] if scaled else None
    return G, H, U, a, b, s


def _commit(
    G: list[bytes], H: list[bytes], U: bytes, a: list[int], b: list[int], s: list[int] | None
) -> bytes:
    sv = s or [1] * len(a)
    ip = sum(x * y for x, y in zip(a, b)) % g.L
    return g.msm([*a, *(x * y for x, y in zip(b, sv)), ip], [*G, *H, U])


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8, 11])
@pytest.mark.parametrize("scaled", [False, True])
def test_ipa_completeness(n: int, scaled: bool) -> None:
    G, H, U, a, b, s = _instance(n, scaled)
    P = _commit(G, H, U, a, b, s)
    proof = ipa.prove(Transcript(b"t"), G, H, U, a, b, s)
    assert len(proof.L) == ipa.rounds(n)
    assert ipa.verify(Transcript(b"t"), P, G, H, U, proof, s)
    again = ipa.IPAProof.from_bytes(proof.to_bytes(), n)
    assert again == proof and len(proof.to_bytes()) == ipa.IPAProof.size(n)


def test_ipa_rejects_tampering() -> None:
    n = 6
    G, H, U, a, b, s = _instance(n, True)
    P = _commit(G, H, U, a, b, s)
    proof = ipa.prove(Transcript(b"t"), G, H, U, a, b, s)
    assert ipa.verify(Transcript(b"t"), P, G, H, U, proof, s)
    other = gg.generators("ipa-test", "other", 1)[0]
    bad = [
        dataclasses.replace(proof, a=(proof.a + 1) % g.L),
        dataclasses.replace(proof, b=(proof.b + 1) % g.L),
        dataclasses.replace(proof, L=(other, *proof.L[1:])),
        dataclasses.replace(proof, R=(*proof.R[:-1], other)),
        dataclasses.replace(proof, L=proof.R, R=proof.L),
    ]
    for pf in bad:
        assert not ipa.verify(Transcript(b"t"), P, G, H, U, pf, s)
    assert not ipa.verify(Transcript(b"t"), g.add(P, U), G, H, U, proof, s)  # wrong inner product
    assert not ipa.verify(Transcript(b"other"), P, G, H, U, proof, s)  # other transcript
    assert not ipa.verify(Transcript(b"t"), P, G, H, U, proof, None)  # other scaling


def test_ipa_proof_decoding_validates() -> None:
    n = 4
    G, H, U, a, b, s = _instance(n, False)
    data = ipa.prove(Transcript(b"t"), G, H, U, a, b, s).to_bytes()
    with pytest.raises(MalformedProof, match="want"):
        ipa.IPAProof.from_bytes(data[:-1], n)
    with pytest.raises(MalformedProof, match="invalid point"):
        ipa.IPAProof.from_bytes(b"\x01" + bytes(31) + data[32:], n)
    with pytest.raises(MalformedProof, match="non-canonical"):
        ipa.IPAProof.from_bytes(data[:-32] + g.L.to_bytes(32, "little"), n)
    with pytest.raises(MalformedProof, match="rounds"):
        ipa.verifier_check(Transcript(b"t"), ipa.IPAProof.from_bytes(data, n), 2 * n + 1)
