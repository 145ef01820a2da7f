"""CKKS protocols against the plaintext rules, and what each party's transcript reveals.

One round per protocol on a small stack (n = 7, d = 4160: two ciphertext chunks, f = 2 outliers),
shared by the tests of this module.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import tenseal as ts
import torch

import protocols
import robust
from protocols.base import RoundResult
from protocols.ckks import CKKSRound, distance_error_bound
from protocols.ckks.messages import Kind, decode_frame, parse_array, unsigned_frame
from protocols.ckks.setup import open_setup
from robust.selection import coordinate_ranks, krum_scores, pairwise_sq_distances

N, D, F, CLIP = 7, 4160, 2, 15.0
#: |sigma z| < 7 sigma for every released value here: P(|z| > 7) = 2.6e-12 per value.
FLOOD_TAIL = 7.0


def make_stack(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    center = rng.uniform(-0.3, 0.3, size=D)
    x = center + 0.02 * rng.standard_normal((N, D))
    x[5] = center + 0.4  # a shifted Byzantine update
    x[6] = -center  # a sign-flipped one
    return x


STACK = make_stack()


def clipped_mean_rule() -> Any:
    return robust.Pipeline(pre=[robust.Clip(c=CLIP)], rule=robust.Mean())


CASES: dict[str, tuple[dict[str, Any], Any]] = {
    "ckks_mean": ({}, lambda: robust.make("mean")),
    "ckks_norm_clip": ({"clip": CLIP}, lambda: clipped_mean_rule()),
    "ckks_krum": ({"f": F}, lambda: robust.make("krum", f=F)),
    "ckks_multi_krum": ({"f": F}, lambda: robust.make("multi_krum", f=F)),
    "ckks_median": ({}, lambda: robust.make("median")),
    "ckks_trimmed_mean": ({"f": F}, lambda: robust.make("trimmed_mean", f=F)),
}

# Message kinds each party receives after setup, in order of first arrival.
KEY_HOLDER_KINDS = {
    "ckks_mean": [Kind.AGGREGATE],
    "ckks_norm_clip": [Kind.SQ_NORMS, Kind.AGGREGATE],
    "ckks_krum": [Kind.DISTANCES, Kind.AGGREGATE],
    "ckks_multi_krum": [Kind.DISTANCES, Kind.AGGREGATE],
    "ckks_median": [Kind.BLINDED, Kind.AGGREGATE],
    "ckks_trimmed_mean": [Kind.BLINDED, Kind.AGGREGATE],
}
SERVER_EXTRA = {
    "ckks_mean": [],
    "ckks_norm_clip": [Kind.FACTORS],
    "ckks_krum": [Kind.SELECTION],
    "ckks_multi_krum": [Kind.SELECTION],
    "ckks_median": [Kind.WEIGHTS],
    "ckks_trimmed_mean": [Kind.WEIGHTS],
}


@pytest.fixture(scope="module")
def rounds() -> dict[str, tuple[CKKSRound, RoundResult]]:
    out = {}
    for name, (kw, _) in CASES.items():
        proto = protocols.make(name, **kw)
        out[name] = (proto, proto.run(torch.as_tensor(STACK, dtype=torch.float32)))
    return out


def plaintext_clip_mean(x: np.ndarray, clip: float, w: np.ndarray | None = None) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1)
    scaled = x * np.minimum(1.0, clip / norms)[:, None]
    w = np.full(len(x), 1.0 / len(x)) if w is None else w / w.sum()
    return w @ scaled


def reference(name: str, x: np.ndarray) -> tuple[np.ndarray, list[int] | None]:
    _, rule = CASES[name]
    agg = rule()
    out = agg(torch.as_tensor(x, dtype=torch.float64)).numpy()
    sel = getattr(agg, "last_selection", None)
    return out, (sorted(int(i) for i in sel) if sel is not None else None)


def x32() -> np.ndarray:
    return torch.as_tensor(STACK, dtype=torch.float32).double().numpy()


# --------------------------------------------------------------------------------------- equality
@pytest.mark.parametrize("name", sorted(CASES))
def test_aggregate_matches_plaintext_rule(name: str, rounds: dict) -> None:
    _, res = rounds[name]
    ref, sel = reference(name, x32())
    err = np.abs(res.aggregate.double().numpy() - ref).max()
    assert err <= 1e-4 * np.abs(ref).max(), f"{name}: max error {err:.3g}"
    if sel is not None:
        assert res.accepted == sel


def test_outliers_do_not_enter_krum_rules(rounds: dict) -> None:
    for name in ("ckks_krum", "ckks_multi_krum"):
        assert not {5, 6} & set(rounds[name][1].accepted)
    assert rounds["ckks_multi_krum"][1].accepted == [0, 1, 2, 3, 4]


def test_norm_clip_actually_clips(rounds: dict) -> None:
    norms = np.linalg.norm(x32(), axis=1)
    assert (norms[[0, 1, 2, 3, 4, 6]] < CLIP).all() and norms[5] > CLIP  # the case is not trivial
    _, res = rounds["ckks_norm_clip"]
    np.testing.assert_allclose(res.aggregate.double().numpy(), plaintext_clip_mean(x32(), CLIP), atol=1e-5)
    sq = res.leakage.learns["key_holder"]["sq_norms"].numpy()
    np.testing.assert_allclose(sq, norms**2, rtol=1e-5)


def test_distance_errors_within_stated_bound_and_selection_margins(rounds: dict) -> None:
    proto, res = rounds["ckks_multi_krum"]
    exact = pairwise_sq_distances(torch.as_tensor(x32())).numpy()
    got = res.leakage.learns["key_holder"]["pairwise_sq_distances"].numpy()
    bound = distance_error_bound(proto.params, exact)
    assert (np.abs(got - exact) <= bound).all()
    # The precondition of the equality claim holds on this stack: neighbour-set and score-cut gaps
    # exceed the error the bound allows, so the selection must equal the plaintext one (checked above).
    e = distance_error_bound(proto.params, exact.max())
    k = N - F - 2
    masked = exact + np.diag(np.full(N, np.inf))
    srt = np.sort(masked, axis=1)
    assert (srt[:, k] - srt[:, k - 1] > 2 * e).all()
    scores = np.sort(krum_scores(torch.as_tensor(exact), F).numpy())
    for m in (1, N - F):
        assert scores[m] - scores[m - 1] > 2 * k * e


@pytest.mark.parametrize("weighted_name", ["ckks_mean", "ckks_norm_clip"])
def test_weighted_rounds(weighted_name: str) -> None:
    x = STACK[:4, :300]
    w = np.array([1.0, 2.0, 3.0, 4.0])
    kw = {"clip": 2.0} if weighted_name == "ckks_norm_clip" else {}
    proto = protocols.make(weighted_name, **kw)
    res = proto.run(torch.as_tensor(x), weights=torch.as_tensor(w))
    ref = plaintext_clip_mean(x, 2.0, w) if kw else (w / w.sum()) @ x
    tol = 1e-5 * np.abs(ref).max() + FLOOD_TAIL * proto.params.flood_std  # CKKS error + flooding
    np.testing.assert_allclose(res.aggregate.double().numpy(), ref, atol=tol)


def test_unweighted_rules_refuse_weights() -> None:
    for name, kw in (("ckks_multi_krum", {"f": 0}), ("ckks_median", {})):
        with pytest.raises(ValueError, match="got weights; want None"):
            protocols.make(name, **kw).run(STACK[:4, :8], weights=torch.ones(4))


def test_even_n_median_and_rounds_reuse_keys() -> None:
    proto = protocols.make("ckks_median")
    x = STACK[:4, :50]
    r1 = proto.run(x)
    kh = proto.key_holder
    r2 = proto.run(x[:, ::-1].copy())
    assert proto.key_holder is kh and ("key_holder", "setup") not in r2.meter.costs
    np.testing.assert_allclose(r1.aggregate.numpy(), np.median(x, axis=0), atol=1e-5)
    np.testing.assert_allclose(r2.aggregate.numpy(), np.median(x[:, ::-1], axis=0), atol=1e-5)


# --------------------------------------------------------------------------------------- parties
def test_server_context_cannot_decrypt(rounds: dict) -> None:
    proto, _ = rounds["ckks_multi_krum"]
    assert proto.server.ctx.is_public() and not proto.server.ctx.is_private()
    upload = next(m for m in proto.transcript if m.phase == "upload")
    part = decode_frame(unsigned_frame(upload.payload), Kind.UPDATE)[0]
    vec = ts.ckks_vector_from(proto.server.ctx, part)
    with pytest.raises(ValueError, match="secret_key"):
        vec.decrypt()
    # The same bytes do decrypt under the key holder's context: the test above is not vacuous.
    opened = ts.ckks_vector_from(proto.key_holder._ctx, part).decrypt()
    np.testing.assert_allclose(opened[:5], STACK[0, :5], atol=1e-5)


def test_clients_receive_public_key_only(rounds: dict) -> None:
    proto, _ = rounds["ckks_krum"]
    setup = [m for m in proto.transcript if m.phase == "setup" and m.receiver.startswith("client")]
    assert len(setup) == N
    # Signed by the key holder (protocols.ckks.setup); the payload is the public context.
    ctx = ts.context_from(
        open_setup(setup[0].payload, proto.key_holder.identity.verify_key, Kind.CONTEXT, "t")
    )
    assert ctx.is_public() and not ctx.has_galois_keys() and not ctx.has_relin_keys()


# --------------------------------------------------------------------------------------- transcripts
def _received(proto: CKKSRound, party: str) -> list[tuple[Kind, list[bytes]]]:
    out = []
    for m in proto.received_by(party):
        if m.phase == "setup":
            continue
        frame = unsigned_frame(m.payload)
        kind = Kind(frame[5])
        out.append((kind, decode_frame(frame, kind)))
    return out


def _kinds(msgs: list[tuple[Kind, list[bytes]]]) -> list[Kind]:
    seen: dict[Kind, None] = {}
    for k, _ in msgs:
        seen.setdefault(k, None)
    return list(seen)


@pytest.mark.parametrize("name", sorted(CASES))
def test_key_holder_transcript_matches_declared_leakage(name: str, rounds: dict) -> None:
    proto, res = rounds[name]
    x = x32()
    kh_ctx = proto.key_holder._ctx
    learns = res.leakage.learns["key_holder"]
    msgs = _received(proto, "key_holder")
    assert _kinds(msgs) == KEY_HOLDER_KINDS[name]  # never an UPDATE, never anything else
    for kind, parts in msgs:
        dec = [np.asarray(ts.ckks_vector_from(kh_ctx, p).decrypt()) for p in parts]
        if kind is Kind.DISTANCES:
            got = np.array([v[0] for v in dec])
            dist = learns["pairwise_sq_distances"].numpy()
            np.testing.assert_array_equal(got, dist[np.triu_indices(N, 1)])
        elif kind is Kind.SQ_NORMS:
            np.testing.assert_array_equal(np.array([v[0] for v in dec]), learns["sq_norms"].numpy())
        elif kind is Kind.BLINDED:
            y = np.concatenate(dec).reshape(N, -1)[:, :D]
            np.testing.assert_array_equal(y, learns["blinded_updates"].numpy())
            assert torch.equal(coordinate_ranks(torch.as_tensor(y)), learns["ranks"])
            # Each column is a positive affine image of the clients' column -- and nothing closer to x.
            xc, yc = x - x.mean(0), y - y.mean(0)
            slope = (xc * yc).sum(0) / (xc**2).sum(0)
            assert (slope >= 1.0 - 1e-4).all() and (slope < 256.0 * (1 + 1e-4)).all()
            resid = np.abs(yc - slope * xc).max(0)
            assert (resid <= 1e-5 * np.maximum(1.0, slope)).all()
            assert np.abs(y - x).max(axis=1).min() > 1e-2  # no row decrypts to a client's update
        elif kind is Kind.AGGREGATE:
            agg = np.concatenate(dec)[:D]
            scale = {"ckks_mean": N, "ckks_multi_krum": N - F}.get(name, 1)
            # the released aggregate is this decryption plus the key holder's flooding noise
            flood_tol = FLOOD_TAIL * proto.params.flood_std / scale
            np.testing.assert_allclose(agg / scale, res.aggregate.numpy(), atol=1e-6 + flood_tol)
            if name != "ckks_krum":  # Krum's output is by definition one client's update
                assert np.abs(agg / scale - x).max(axis=1).min() > 1e-3
        for v in dec:  # padded slots beyond the update carry nothing
            assert v.shape[0] in (1, proto.params.slots)


@pytest.mark.parametrize("name", sorted(CASES))
def test_server_transcript_holds_only_ciphertexts_and_declared_values(name: str, rounds: dict) -> None:
    proto, res = rounds[name]
    msgs = _received(proto, "server")
    assert _kinds(msgs) == [Kind.UPDATE, *SERVER_EXTRA[name], Kind.PLAINTEXT]
    learns = res.leakage.learns["server"]
    for kind, parts in msgs:
        if kind is Kind.SELECTION:
            sel = parse_array(parts[0], "int64", len(learns["selection"]), "selection")
            assert sorted(sel.tolist()) == learns["selection"]
        elif kind is Kind.PLAINTEXT:
            vals = parse_array(parts[0], "float64", D, "aggregate")
            scale = {"ckks_mean": N, "ckks_multi_krum": N - F}.get(name, 1)
            np.testing.assert_allclose(vals / scale, learns["aggregate"].numpy(), atol=1e-6)
        else:  # ciphertexts: the server's own context cannot open them
            with pytest.raises(ValueError, match="secret_key"):
                ts.ckks_vector_from(proto.server.ctx, parts[0]).decrypt()
    told = {"ckks_mean": set(), "ckks_krum": {"selection"}, "ckks_multi_krum": {"selection"}}
    assert set(learns) == {"aggregate"} | told.get(name, {"excluded"})


def test_meter_records_every_party_and_phase(rounds: dict) -> None:
    proto, res = rounds["ckks_multi_krum"]
    phases = {ph for (_, ph) in res.meter.costs}
    assert {"setup", "upload", "distances", "select", "aggregate", "decrypt"} <= phases
    up = res.meter.total("client", "upload")
    assert up.bytes_sent == sum(len(m.payload) for m in proto.transcript if m.phase == "upload")
    assert res.meter.total("server", "upload").bytes_received == up.bytes_sent
    per_client = up.bytes_sent / N
    assert per_client < 2 * 300_000  # two fresh ciphertexts of ~235 kB each


def test_forked_server_workers_give_the_same_round() -> None:
    x = STACK[:6, :300]
    one = protocols.make("ckks_multi_krum", f=1).run(x)
    two_proto = protocols.make("ckks_multi_krum", f=1, workers=2)
    two = two_proto.run(x)
    assert one.accepted == two.accepted
    flood_tol = 2 * FLOOD_TAIL * two_proto.params.flood_std  # two independent floodings
    np.testing.assert_allclose(one.aggregate.numpy(), two.aggregate.numpy(), atol=1e-6 + flood_tol)
    d1 = one.leakage.learns["key_holder"]["pairwise_sq_distances"].numpy()
    d2 = two.leakage.learns["key_holder"]["pairwise_sq_distances"].numpy()
    np.testing.assert_allclose(d1, d2, atol=2 * distance_error_bound(two_proto.params, d1.max()))
