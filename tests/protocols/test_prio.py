"""protocols.prio: the two-server PINE mechanism on the real party objects: honest rounds, attackers
(scaling, large norm) rejected and absent from the aggregate, malformed and replayed reports rejected
with a typed reason, dropouts, the release floor, and what each server sees."""

from __future__ import annotations

import nacl.utils
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import protocols
from protocols.channel import drop, frame_bytes
from protocols.prio import NonFiniteUpdate, PrioClient, PrioPine, PrioServer
from secagg.errors import TooFewSurvivors
from secagg.vdaf.pine import PineParams
from secagg.vdaf.pine_vdaf import Pine

D = 12


def _honest(n: int, seed: int = 0, scale: float = 0.8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D))
    return x / np.linalg.norm(x, axis=1, keepdims=True) * scale * rng.uniform(0.2, 1.0, size=(n, 1))


def _fixed(x: np.ndarray) -> np.ndarray:
    return np.rint(x * 2**15) / 2**15


def test_registered_and_an_honest_round_releases_the_mean() -> None:
    proto = protocols.make("prio", wr_checks=20)
    assert isinstance(proto, PrioPine)
    x = _honest(5)
    res = proto.run(torch.as_tensor(x, dtype=torch.float32))
    assert res.accepted == [0, 1, 2, 3, 4]
    want = _fixed(torch.as_tensor(x, dtype=torch.float32).double().numpy()).mean(axis=0)
    assert np.allclose(res.aggregate.numpy(), want, atol=1e-6)
    for party in ("leader", "helper"):
        assert res.leakage.keys(party) == {"aggregate", "count", "accepted", "rejected", "absent"}
        assert res.leakage.learns[party]["rejected"] == {}
    assert res.leakage.keys("client") == set()
    up = res.meter.total("client", "upload").bytes_sent
    frames = sum(
        frame_bytes(f"client[{i}]", srv, "report", 0) for i in range(5) for srv in ("leader", "helper")
    )
    assert up == 5 * PrioPine(wr_checks=20).describe(D)["upload_bytes"] + frames


@pytest.mark.parametrize("lost", ["helper", "leader"])
def test_a_report_share_lost_in_transit_rejects_that_report_and_the_round_completes(lost: str) -> None:
    """The channel drops client 3's share to one server: both servers reject report 3 (the other one
    never gets the lost server's verifier share), and the released mean is over the others."""
    x = _honest(5, seed=4)
    proto = PrioPine(wr_checks=20, faults=[drop(lambda f: f.sender == "client[3]" and f.receiver == lost)])
    res = proto.run(torch.as_tensor(x, dtype=torch.float32))
    assert res.accepted == [0, 1, 2, 4]
    want = _fixed(torch.as_tensor(x, dtype=torch.float32).double().numpy())[[0, 1, 2, 4]].mean(axis=0)
    assert np.allclose(res.aggregate.numpy(), want, atol=1e-6)
    for party in ("leader", "helper"):
        assert 3 in res.leakage.learns[party]["rejected"]
    assert "lost in transit" in res.leakage.learns[lost]["rejected"][3]
    assert proto.channel is not None
    arrived = {(m.sender, m.receiver) for m in proto.channel.transcript if m.phase == "upload"}
    assert ("client[3]", lost) not in arrived and len(arrived) == 9


def test_a_report_lost_to_both_servers_is_absent() -> None:
    x = _honest(4, seed=5)
    res = PrioPine(wr_checks=20, faults=[drop(lambda f: f.sender == "client[1]")]).run(x)
    assert res.accepted == [0, 2, 3]
    assert res.leakage.learns["leader"]["absent"] == [1] and res.leakage.learns["leader"]["rejected"] == {}


@pytest.mark.parametrize("attack", ["scaling", "large_norm"])
def test_attackers_are_rejected_and_never_reach_the_aggregate(attack: str) -> None:
    x = _honest(6, seed=1)
    if attack == "scaling":
        x[2] *= 10.0
    else:
        x[2] = np.full(D, 1e3)
    res = PrioPine(wr_checks=20).run(x)
    assert res.accepted == [0, 1, 3, 4, 5]
    for party in ("leader", "helper"):
        assert 2 in res.leakage.learns[party]["rejected"]
    assert "proof 0 rejected" in res.leakage.learns["leader"]["rejected"][2]
    honest = np.delete(x, 2, axis=0)
    assert np.allclose(res.aggregate.numpy(), _fixed(honest).mean(axis=0), atol=1e-6)


def test_clip_to_bound_scales_an_oversized_update_into_the_bound() -> None:
    x = _honest(3, seed=2)
    x[0] *= 50.0
    res = PrioPine(wr_checks=20, clip_to_bound=True).run(x)
    assert res.accepted == [0, 1, 2]
    contribution = res.aggregate.numpy() * 3 - _fixed(x[1:]).sum(axis=0)
    assert np.linalg.norm(contribution) <= 1.0 + 1e-5


def test_malformed_replayed_and_truncated_reports_are_rejected_with_a_reason() -> None:
    pine = Pine(PineParams(D, num_wr_checks=20))
    key, ctx = nacl.utils.random(32), b"ctx"
    leader, helper = PrioServer(0, pine, key, ctx), PrioServer(1, pine, key, ctx)
    to_leader, to_helper = PrioClient(0, pine, ctx).reports(_honest(1)[0])
    assert leader.receive(0, to_leader) is not None and helper.receive(0, to_helper) is not None
    assert leader.receive(1, to_leader) is None  # the same report again
    assert "repeated nonce" in leader.rejected[1]
    assert leader.receive(2, b"\x00" * 10) is None
    assert "VdafError" in leader.rejected[2]
    fresh, _ = PrioClient(3, pine, ctx).reports(_honest(1)[0])
    assert leader.receive(3, fresh[:-1]) is None
    assert "VdafDecodeError" in leader.rejected[3]
    wrong_key = PrioServer(0, pine, key, b"another round")
    other, _ = PrioClient(4, pine, ctx).reports(_honest(1)[0])
    assert wrong_key.receive(4, other) is not None  # parses; the proof check decides later


def test_the_helper_sees_only_seeds_and_the_leader_a_masked_update() -> None:
    pine = Pine(PineParams(D, num_wr_checks=20))
    client = PrioClient(0, pine, b"ctx")
    a_leader, a_helper = client.reports(np.zeros(D))
    b_leader, b_helper = client.reports(np.full(D, 0.25))
    assert len(a_helper) == len(b_helper) == 16 + 128 + 96
    assert len(a_leader) == len(b_leader)
    share = pine.decode_input_share(0, a_leader[16 + 128 :])
    assert not np.any(share.sent_share[:D] == 0)  # a zero update is not visible in the leader's share


def test_dropouts_are_absent_reports_and_the_floor_holds() -> None:
    x = _honest(8, seed=4)
    res = PrioPine(wr_checks=20, dropout=0.5).run(x, rng=np.random.default_rng(0))
    absent = res.leakage.learns["leader"]["absent"]
    assert absent and set(absent).isdisjoint(res.accepted)
    assert sorted(set(res.accepted) | set(absent)) == list(range(8))
    bad = np.full((3, D), 5.0)
    with pytest.raises(TooFewSurvivors, match="accepted reports"):
        PrioPine(wr_checks=20, min_count=1).run(bad)


def test_non_finite_updates_are_refused() -> None:
    x = _honest(3)
    x[1, 0] = np.nan
    with pytest.raises(NonFiniteUpdate, match="rows \\[1\\]"):
        PrioPine(wr_checks=20).run(x)


@pytest.mark.slow
def test_in_the_simulation_a_large_norm_attacker_never_reaches_the_model() -> None:
    from fedsec.config import Config
    from fedsec.simulation import simulate

    base = {
        "name": "tiny-prio",
        "data": {
            "dataset": "synthetic",
            "n_clients": 8,
            "partition": "iid",
            "min_samples": 4,
            "options": {"n_samples": 400, "n_features": 8, "n_classes": 3, "class_sep": 3.0},
        },
        "model": {"name": "logreg"},
        "train": {"rounds": 4, "lr": 0.5, "batch_size": 16, "threads": 1},
        "eval": {"every": 2},
        "output": {"plots": False},
        "attack": {"name": "large_norm", "f": 2},
    }
    plain = simulate(Config.from_dict(base))
    prio = simulate(
        Config.from_dict({**base, "protocol": {"name": "prio", "kwargs": {"bound": 5.0, "wr_checks": 20}}})
    )
    assert plain.max_accuracy < 0.5 < 0.9 < prio.max_accuracy
    assert "prio" in prio.summary["threat_model"]["secure_aggregation"]


def test_multi_krum_on_shares_matches_the_plaintext_rule_and_reveals_only_distances() -> None:
    import robust

    x = _honest(7, seed=5)
    x[6] = -x[0] / np.linalg.norm(x[0]) * 0.99  # within the bound, far from the others
    x[5] *= 30.0  # over the bound: rejected before the selection
    res = PrioPine(wr_checks=20, select="multi_krum", f=1).run(x)
    kept = _fixed(np.delete(x, 5, axis=0))
    rule = robust.MultiKrum(f=1)
    want = rule(torch.as_tensor(kept))
    assert np.allclose(res.aggregate.numpy(), want.numpy(), atol=1e-6)
    assert res.accepted == [[0, 1, 2, 3, 4, 6][k] for k in rule.last_selection]
    assert 6 not in res.accepted  # the far (but in-bound) update is not selected
    seen = res.leakage.learns["helper"]
    assert 5 in seen["rejected"] and seen["accepted"] == [0, 1, 2, 3, 4, 6]
    dist = robust.selection.pairwise_sq_distances(torch.as_tensor(kept))
    assert torch.allclose(seen["sq_distances"].double(), dist.double(), atol=1e-9)
    assert res.meter.total("dealer", "select").bytes_sent > 0


def test_selections_that_need_comparisons_are_refused() -> None:
    from secagg.vdaf.errors import VdafError

    with pytest.raises(VdafError, match="secure comparisons"):
        PrioPine(select="median")


def _spread(n: int, seed: int) -> np.ndarray:
    """Honest updates plus one in-bound update far from the others (last row)."""
    x = _honest(n, seed=seed)
    x[-1] = -x[0] / np.linalg.norm(x[0]) * 0.99
    return x


@pytest.mark.parametrize("select", [None, "krum", "multi_krum"])
def test_nnm_then_a_rule_on_shares_matches_the_plaintext_pipeline(select: str | None) -> None:
    import robust

    x = _spread(7, seed=6)
    res = PrioPine(wr_checks=20, pre="nnm", select=select, f=1).run(x)
    kept = torch.as_tensor(_fixed(x))
    mixed = robust.NNM(f=1)(kept)
    rule = {None: None, "krum": robust.Krum(f=1), "multi_krum": robust.MultiKrum(f=1)}[select]
    want = mixed.mean(dim=0) if rule is None else rule(mixed)
    assert np.allclose(res.aggregate.numpy(), want.numpy(), atol=1e-6)
    dist = robust.selection.pairwise_sq_distances(kept)
    assert torch.allclose(res.leakage.learns["leader"]["sq_distances"].double(), dist.double(), atol=1e-9)
    if rule is not None:  # the mixed rows the rule selected, and every client mixed into them
        mix = robust.selection.nnm_mixing(dist, 1)
        used = torch.nonzero(mix[torch.as_tensor(rule.last_selection)].sum(0)).flatten().tolist()
        assert res.accepted == used


def test_bulyan_selection_on_shares_matches_the_plaintext_rule() -> None:
    import robust

    x = _spread(8, seed=7)
    x[3] *= 40.0  # over the bound: rejected first
    res = PrioPine(wr_checks=20, select="bulyan", f=1).run(x)
    rows = [0, 1, 2, 4, 5, 6, 7]
    kept = torch.as_tensor(_fixed(x[rows]))
    rule = robust.Bulyan(f=1)
    rule(kept)
    assert res.accepted == [rows[k] for k in rule.last_selection]
    assert 7 not in res.accepted and len(res.accepted) == 7 - 2
    assert np.allclose(res.aggregate.numpy(), kept[rule.last_selection].mean(dim=0).numpy(), atol=1e-6)


def test_fltrust_on_shares_matches_the_plaintext_rule_and_reveals_scores() -> None:
    import robust

    x = _spread(6, seed=8)
    x[2] = -x[1]  # opposite to the root: zero trust
    root = x[0] + x[1] + 0.1 * x[4]
    res = PrioPine(wr_checks=20, select="fltrust").run(x, root=root)
    kept, g0 = torch.as_tensor(_fixed(x)), torch.as_tensor(_fixed(root))
    rule = robust.FLTrust()
    want = rule(kept, root=g0)
    assert np.allclose(res.aggregate.numpy(), want.numpy(), atol=1e-6)
    assert res.accepted == rule.last_selection and 2 not in res.accepted
    seen = res.leakage.learns["helper"]
    assert np.allclose(seen["root_inner_products"].numpy(), (kept @ g0).numpy(), atol=1e-9)
    assert np.allclose(seen["sq_norms"].numpy(), (kept * kept).sum(1).numpy(), atol=1e-9)
    assert "sq_distances" not in seen and res.meter.total("dealer", "select").bytes_sent == 0


def test_a_client_forging_its_norm_claim_cannot_steer_fltrust() -> None:
    x = _spread(5, seed=9)
    x[1] = x[0] * 30.0  # aligned with the root but far over the bound: rejected before the scores
    res = PrioPine(wr_checks=20, select="fltrust").run(x, root=x[0])
    assert 1 not in res.accepted and 1 in res.leakage.learns["leader"]["rejected"]
    assert float(np.linalg.norm(res.aggregate.numpy())) <= np.linalg.norm(x[0]) + 1e-5


def test_rule_arguments_are_checked() -> None:
    from secagg.vdaf.errors import VdafError

    with pytest.raises(VdafError, match="want a root with fltrust only"):
        PrioPine(select="fltrust", wr_checks=20).run(_honest(3))
    with pytest.raises(VdafError, match="want a root with fltrust only"):
        PrioPine(select="krum", wr_checks=20).run(_honest(3), root=np.ones(D))
    with pytest.raises(VdafError, match=f"want \\({D},\\)"):
        PrioPine(select="fltrust", wr_checks=20).run(_honest(3), root=np.ones(D + 1))
    with pytest.raises(VdafError, match="only linear pre-aggregator"):
        PrioPine(pre="bucketing")
    with pytest.raises(VdafError, match="FLTrust needs no mixing"):
        PrioPine(pre="nnm", select="fltrust")


@settings(max_examples=20, deadline=None)
@given(
    st.integers(1, 6).flatmap(
        lambda m: st.tuples(
            st.lists(st.integers(-(2**15), 2**15), min_size=m * 5, max_size=m * 5),
            st.lists(st.integers(0, 40), min_size=m, max_size=m),
        )
    )
)
def test_weighted_shares_add_up_to_the_weighted_sum(case: tuple[list[int], list[int]]) -> None:
    from types import SimpleNamespace

    from protocols.prio_rules import weighted_share
    from secagg.vdaf.field import Field64

    flat, v = case
    m = len(v)
    x = np.array(flat, dtype=np.int64).reshape(m, 5)
    pine = Pine(PineParams(5, num_wr_checks=20))
    mask = Field64.arr([int.from_bytes(nacl.utils.random(8), "little") for _ in range(m * 5)]).reshape(m, 5)
    parts = [Field64.sub(Field64.arr(x), mask), mask]
    srvs = [SimpleNamespace(states={i: SimpleNamespace(out_share=p[i]) for i in range(m)}) for p in parts]
    shares = [weighted_share(pine, s, list(range(m)), np.array(v)) for s in srvs]  # type: ignore[arg-type]
    want = [int(t) % Field64.MODULUS for t in np.array(v, dtype=object) @ x.astype(object)]
    assert Field64.to_ints(Field64.add(shares[0], shares[1])) == want
