"""Stateful rules (CenteredClipping, Reputation, seeded generators) and Pipeline's selection mapping."""

from __future__ import annotations

import numpy as np
import pytest
import robust_refs as ref
import torch

import robust


def test_centered_clipping_carries_its_center() -> None:
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=(6, 4)) + 5, rng.normal(size=(6, 4)) - 3
    cc = robust.CenteredClipping(tau=1.0, iters=2)
    assert cc.state_dict() == {"center": None}
    v1 = cc(x1)
    v2 = cc(x2)
    np.testing.assert_allclose(v1.numpy(), ref.ref_centered_clipping(x1, 1.0, 2, np.zeros(4)), rtol=1e-12)
    np.testing.assert_allclose(v2.numpy(), ref.ref_centered_clipping(x2, 1.0, 2, v1.numpy()), rtol=1e-12)
    state = cc.state_dict()
    torch.testing.assert_close(state["center"], v2)
    other = robust.CenteredClipping(tau=1.0, iters=2)
    other.load_state_dict(state)
    torch.testing.assert_close(other(x1), cc(x1))
    cc.reset()
    torch.testing.assert_close(cc(x1), v1)


def test_centered_clipping_refuses_a_new_dimension() -> None:
    cc = robust.CenteredClipping()
    cc(torch.ones(3, 4))
    with pytest.raises(ValueError, match="d=5"):
        cc(torch.ones(3, 5))


def test_centered_clipping_moves_at_most_tau_per_iteration() -> None:
    x = np.zeros((5, 3))
    x[0] = 1e12
    out = robust.CenteredClipping(tau=2.0, iters=3)(x)
    assert float(out.norm()) <= 3 * 2.0 / 5 + 1e-12


@pytest.mark.parametrize(
    "factory", [lambda: robust.DnC(f=1, sub_dim=3, seed=None), lambda: robust.DnC(f=1, sub_dim=3)]
)
def test_dnc_generator_reset_reproduces(factory: object) -> None:
    x = torch.from_numpy(np.random.default_rng(1).normal(size=(9, 30)))
    agg = factory()  # type: ignore[operator]
    first = [agg(x) for _ in range(3)]
    agg.reset()
    again = [agg(x) for _ in range(3)]
    for a, b in zip(first, again):
        torch.testing.assert_close(a, b)


def test_unseeded_generators_differ_between_objects() -> None:
    seeds = {robust.Bucketing(s=2).seed for _ in range(4)}
    assert len(seeds) == 4


def test_bucketing_generator_advances_and_resets() -> None:
    x = torch.arange(12.0).reshape(6, 2)
    b = robust.Bucketing(s=2, seed=4)
    sources = []
    for _ in range(5):
        b(x)
        sources.append(b.last_sources)
    assert len({str(s) for s in sources}) > 1  # a fresh permutation each call
    b.reset()
    b(x)
    assert b.last_sources == sources[0]


def test_pipeline_maps_selection_through_buckets() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(14, 3))
    x[[2, 9]] = 50.0  # two far rows
    pre = robust.Bucketing(s=2, seed=7)
    agg = robust.Pipeline(pre=[pre], rule=robust.MultiKrum(f=2))
    out = agg(x)
    buckets = pre.last_sources
    assert buckets is not None and len(buckets) == 7
    chosen = robust.MultiKrum(f=2)
    bucket_means = torch.from_numpy(np.array([x[b].mean(axis=0) for b in buckets]))
    torch.testing.assert_close(out, chosen(bucket_means))
    assert chosen.last_selection is not None
    assert agg.last_selection == sorted(i for k in chosen.last_selection for i in buckets[k])
    assert 2 not in agg.last_selection and 9 not in agg.last_selection


def test_pipeline_of_identity_pre_maps_rows_and_keeps_state() -> None:
    x = np.random.default_rng(6).normal(size=(9, 4))
    x[4, 0] = np.nan
    cc = robust.CenteredClipping(tau=0.5)
    agg = robust.Pipeline(pre=[robust.Clip(c=1.0), robust.NNM(f=2)], rule=cc)
    agg(x)
    assert cc.center is not None
    assert agg.state_dict()["rule"]["center"] is not None
    agg.reset()
    assert cc.center is None
    mk = robust.Pipeline(pre=[robust.Clip(c=1.0)], rule=robust.MultiKrum(f=2))
    mk(x)
    assert mk.last_selection is not None and 4 not in mk.last_selection and len(mk.last_selection) == 7


def test_pipeline_forwards_root_to_fltrust() -> None:
    x = np.random.default_rng(7).normal(size=(6, 3)) + 1
    agg = robust.Pipeline(pre=[robust.Clip(c=0.5)], rule=robust.FLTrust())
    assert agg.needs_root
    g0 = torch.ones(3, dtype=torch.float64)
    torch.testing.assert_close(agg(x, root=g0), robust.FLTrust()(robust.Clip(c=0.5)(x), root=g0))


def test_reputation_withholds_persistent_outliers_and_recovers() -> None:
    rng = np.random.default_rng(8)
    rep = robust.Reputation(robust.Median(), decay=0.5, threshold=0.5)
    ids = [f"c{i}" for i in range(9)]
    for _ in range(3):
        x = rng.normal(size=(9, 5))
        x[0] = 1e6
        rep(x, ids=ids)
    assert rep.trust["c0"] < 0.5 and min(rep.trust[c] for c in ids[1:]) >= 0.5
    x = rng.normal(size=(9, 5))
    x[0] = 1e6
    rep(x, ids=ids)
    assert rep.last_selection == list(range(1, 9))  # c0 withheld from the rule
    for _ in range(4):  # c0 behaves again: trust recovers and it is used again
        rep(rng.normal(size=(9, 5)), ids=ids)
    assert rep.trust["c0"] >= 0.5
    assert 0 in (rep.last_selection or [])
    assert set(rep.state_dict()["trust"]) == set(ids)
    rep.reset()
    assert rep.trust == {}


def test_reputation_keeps_the_rule_bound() -> None:
    """When withholding distrusted clients would break Krum's bound, every row is used."""
    rep = robust.Reputation(robust.Krum(f=1), decay=0.0, threshold=0.5)
    rng = np.random.default_rng(9)
    x = rng.normal(size=(5, 3))
    x[0] = 1e6
    rep(x)
    assert rep.trust[0] == 0.0
    rep(x)  # 4 trusted rows are too few for f=1 (needs n > 4): all 5 rows go to Krum
    assert rep.last_selection is not None and len(rep.last_selection) == 1 and rep.last_selection != [0]


def test_reputation_ids_checks() -> None:
    rep = robust.Reputation(robust.Median())
    with pytest.raises(ValueError, match="ids must be 3 distinct"):
        rep(torch.zeros(3, 2), ids=[1, 1, 2])


def test_selection_functions_are_pure_on_distances() -> None:
    """bulyan_select / nnm_mixing take only the distance matrix (the encrypted protocols' input)."""
    x = np.random.default_rng(10).normal(size=(11, 4))
    dist = robust.pairwise_sq_distances(torch.from_numpy(x))
    assert sorted(robust.bulyan_select(dist, 2).tolist()) == ref.ref_bulyan(x, 2)[1]
    np.testing.assert_allclose((robust.nnm_mixing(dist, 3) @ torch.from_numpy(x)).numpy(), ref.ref_nnm(x, 3))
    with pytest.raises(robust.ByzantineBoundError, match="Bulyan needs n >= 4f \\+ 3"):
        robust.bulyan_select(dist, 3)


PRE_WITH_OUTPUT = {
    "nnm": lambda: robust.NNM(f=1),
    "clip": lambda: robust.Clip(c=1.0),
    "arc": lambda: robust.ARC(f=1),
    "bucketing": lambda: robust.Bucketing(s=2, seed=3),
}


@pytest.mark.parametrize("name", sorted(PRE_WITH_OUTPUT))
def test_output_memory_is_reused_only_once_released(name: str) -> None:
    """A result (or a view, or its numpy array) still held is never overwritten by the next call;
    once every tensor made from it is gone, the next call writes into the same memory."""
    rng = np.random.default_rng(0)
    x1, x2 = (torch.from_numpy(rng.normal(size=(7, 50)).astype(np.float32)) for _ in range(2))
    pre = PRE_WITH_OUTPUT[name]()

    def fresh(x: torch.Tensor) -> torch.Tensor:
        return PRE_WITH_OUTPUT[name]()(x)

    for keep in (lambda t: t, lambda t: t[2], lambda t: t.numpy(), lambda t: t[1:3].T):
        out = pre(x1)
        held = keep(out)
        snapshot = torch.as_tensor(held).clone()
        ptr = out.data_ptr()
        del out
        nxt = pre(x2)
        assert nxt.data_ptr() != ptr
        torch.testing.assert_close(torch.as_tensor(held), snapshot)
        del held, nxt
    out = pre(x1)
    ptr = out.data_ptr()
    del out
    again = pre(x2)
    assert again.data_ptr() == ptr
    if name != "bucketing":  # bucketing draws a new permutation each call
        torch.testing.assert_close(again, fresh(x2))


def test_copies_of_a_pre_aggregator_do_not_share_output_memory() -> None:
    import copy
    import pickle

    x = torch.randn(7, 20)
    nnm = robust.NNM(f=1)
    nnm(x)
    for other in (copy.deepcopy(nnm), pickle.loads(pickle.dumps(nnm))):
        assert other.output._array is None
        a, b = nnm(x), other(x)
        assert a.data_ptr() != b.data_ptr()
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("shape", [(0,), (1,), (3, 5), (25, 1001), (2, 3, 4)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_aligned_arrays(shape: tuple[int, ...], dtype: type) -> None:
    from robust.base import ALIGN, aligned_empty

    a = aligned_empty(shape, dtype)
    assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable
    assert a.size == 0 or a.ctypes.data % ALIGN == 0


def test_rule_outputs_and_row_copies_are_aligned() -> None:
    from robust.base import ALIGN, take_rows

    x = torch.randn(9, 1000)
    for name, make_pre in PRE_WITH_OUTPUT.items():
        assert make_pre()(x).data_ptr() % ALIGN == 0, name
    rows = take_rows(x, torch.tensor([4, 0, -1]))
    assert rows.data_ptr() % ALIGN == 0
    torch.testing.assert_close(rows, x[[4, 0, 8]])
    with pytest.raises(IndexError, match="must index the 9 rows"):
        take_rows(x, torch.tensor([1, 9]))
