"""secagg.normbound.parallel: one proof on several processes gives the very bytes of one process."""

from __future__ import annotations

import hashlib
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

from secagg.normbound import (
    NormBoundParams,
    ProofContext,
    ProofRejected,
    ipa,
    normproof,
    parallel,
    verify,
    verify_batch,
)
from secagg.normbound import generators as gg
from secagg.normbound import group as g
from secagg.normbound.errors import ParameterError
from secagg.normbound.transcript import Transcript

CTX = ProofContext(session=b"parallel", round=1, client=2)


@pytest.fixture
def tiny_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Split from 8 terms on, so that small instances take the pool path."""
    monkeypatch.setattr(parallel, "PARALLEL_MIN", 8)
    monkeypatch.setattr(parallel, "START_MIN", 8)


def _det_scalars(count: int, tag: bytes = b"") -> list[int]:
    return [int.from_bytes(hashlib.sha512(tag + b"%d" % i).digest(), "little") % g.L for i in range(count)]


def test_pool_msm_and_fold_match_one_process(tiny_chunks: None) -> None:
    pts = gg.generators("parallel-test", "P", 40)
    ks = _det_scalars(40)
    ks[3] = 0
    ks[7] = 1
    ks[9] = g.L - 1  # the special cases of msm inside a chunk
    coeffs = [*ks[20:], 1]
    with parallel.Workers(2) as pool:
        assert pool._parts(40) > 1
        got = pool.msms([(ks, pts), (ks[:5], pts[:5])])
        folded = pool.folds([(pts[:20], pts[20:], coeffs[:20])])
        assert pool._pool is not None  # the pool path ran
    assert got == [g.msm(ks, pts), g.msm(ks[:5], pts[:5])]
    assert folded == [[g.add(p, g.smul(c, q)) for p, q, c in zip(pts[:20], pts[20:], coeffs)]]
    with parallel.Workers(1) as one:
        assert one.msm(ks, pts) == got[0] and one._pool is None


@pytest.mark.parametrize("n", [9, 16, 37])
def test_ipa_with_a_pool_is_byte_identical(tiny_chunks: None, n: int) -> None:
    G = gg.generators("parallel-test", "G", n)
    H = gg.generators("parallel-test", "H", n)
    U = gg.generators("parallel-test", "U", 1)[0]
    a, b = _det_scalars(n, b"a"), _det_scalars(n, b"b")
    s = [pow(5, -i, g.L) for i in range(n)]
    one = ipa.prove(Transcript(b"t"), G, H, U, a, b, s)
    with parallel.Workers(2) as pool:
        two = ipa.prove(Transcript(b"t"), G, H, U, a, b, s, pool)
    assert two.to_bytes() == one.to_bytes()
    ip = sum(x * y for x, y in zip(a, b)) % g.L
    P = g.msm([*a, *(x * y for x, y in zip(b, s)), ip], [*G, *H, U])
    assert ipa.verify(Transcript(b"t"), P, G, H, U, two, s)


def test_norm_proof_with_workers_is_byte_identical(
    tiny_chunks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = NormBoundParams(d=12, entry_bits=4, bound=70, exact=False, checks=4)
    x = np.array([3, -4, 2, 0, 1, -1, 5, -2, 0, 0, 1, 1])
    r = 77
    C = params.key.commit(x, r)
    monkeypatch.setattr(normproof, "random_scalars", _det_scalars)  # the same blinders for both runs
    one = normproof.prove(params, x, r, C, CTX, workers=1).to_bytes()
    two = normproof.prove(params, x, r, C, CTX, workers=2).to_bytes()
    assert two == one
    verify(params, C, two, CTX, workers=2)
    forged = normproof.forge_proof(params, 3 * x, r, params.key.commit(3 * x, r), CTX, workers=2)
    with pytest.raises(ProofRejected):
        verify(params, params.key.commit(3 * x, r), forged, CTX, workers=2)
    errors = verify_batch(params, [(C, two, CTX), (params.key.commit(3 * x, r), forged, CTX)], workers=2)
    assert errors[0] is None and isinstance(errors[1], ProofRejected)


def _child_default() -> int:
    return parallel.default_workers()


def test_no_nested_pools() -> None:
    with ProcessPoolExecutor(1) as ex:
        assert ex.submit(_child_default).result() == 1
    assert parallel.default_workers() >= 1


@pytest.mark.parametrize("bad", [0, -1, True, 2.0, "2"])
def test_workers_are_validated(bad: object) -> None:
    with pytest.raises(ParameterError, match="workers: got"):
        parallel.Workers(bad)  # type: ignore[arg-type]
