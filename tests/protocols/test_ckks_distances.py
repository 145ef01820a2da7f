"""The server's lazy-relinearization distances against the chunkwise reference and the plaintext."""

from __future__ import annotations

import numpy as np
import pytest
import tenseal as ts

from protocols.ckks import CKKSParams, distance_error_bound
from protocols.ckks.distances import DistanceEvaluator, _Sink, vector_proto
from protocols.ckks.parties import chunk_rows, load_vector, sq_distance

PARAMS = CKKSParams()
D = 2 * PARAMS.slots + 37  # three chunks, the last one mostly padding


@pytest.fixture(scope="module")
def setup() -> tuple[ts.Context, np.ndarray, list[list[object]]]:
    ctx = ts.context(ts.SCHEME_TYPE.CKKS, 8192, coeff_mod_bit_sizes=list(PARAMS.coeff_mod_bit_sizes))
    ctx.global_scale = 2.0**PARAMS.global_scale_bits
    ctx.generate_relin_keys()
    ctx.generate_galois_keys()
    rng = np.random.default_rng(3)
    x = rng.uniform(-1.0, 1.0, size=(3, D))
    x[2] = x[0] + 1e-3  # a close pair: the absolute error floor matters there
    ups = [[ts.ckks_vector(ctx, c) for c in chunk_rows(r, PARAMS.slots)] for r in x]
    return ctx, x, ups


def test_vector_proto_reproduces_tenseal_serialization(setup) -> None:
    _, _, ups = setup
    v = ups[0][0]
    raw = _Sink().dump(v.ciphertext()[0])
    assert vector_proto(raw, PARAMS.slots, 2.0**PARAMS.global_scale_bits) == v.serialize()


def test_lazy_distances_match_reference_and_plaintext(setup) -> None:
    ctx, x, ups = setup
    ev = DistanceEvaluator(ctx, 2.0**PARAMS.global_scale_bits, PARAMS.slots)
    raw = [ev.raw(u) for u in ups]
    priv = ctx  # the key holder's context (tests only)
    for i, j in [(0, 1), (0, 2), (1, 2)]:
        exact = float(((x[i] - x[j]) ** 2).sum())
        part = ev.sq_distance(raw[i], raw[j])
        vec = load_vector(priv, part, levels=1, slots=1, scale=2.0**PARAMS.global_scale_bits, what="d")
        lazy = vec.decrypt()[0]
        ref = sq_distance(ups[i], ups[j]).decrypt()[0]
        assert abs(lazy - exact) <= distance_error_bound(PARAMS, exact)
        assert abs(lazy - ref) <= 2 * distance_error_bound(PARAMS, exact)
        # the same ciphertext shape and size as the reference's serialization
        assert abs(len(part) - len(sq_distance(ups[i], ups[j]).serialize())) < 64


def test_forked_process_gets_its_own_sink(setup) -> None:
    ctx, _, ups = setup
    ev = DistanceEvaluator(ctx, 2.0**PARAMS.global_scale_bits, PARAMS.slots)
    raw = [ev.raw(u) for u in ups]
    first = ev.sq_distance(raw[0], raw[1])
    sink = ev._sink
    assert sink is not None
    sink.pid = -1  # as if this process were a fork of the one that made the sink
    second = ev.sq_distance(raw[0], raw[1])
    assert ev._sink is not sink and len(first) == len(second)


def test_empty_updates_are_refused(setup) -> None:
    ctx, _, _ = setup
    ev = DistanceEvaluator(ctx, 2.0**PARAMS.global_scale_bits, PARAMS.slots)
    with pytest.raises(ValueError, match="got updates of 0 chunks; want at least 1"):
        ev.sq_distance([], [])
