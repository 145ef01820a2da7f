"""A malicious server against the real clients: split survivor lists, tiny survivor lists, and an
invariant over its view for randomized malicious schedules (see tests/secagg/malicious.py)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from malicious import attack, session, split_target, uniform_inputs

from protocols.secagg_sum import SecAggPlusSum, SecAggSum
from secagg import SecAggError, TooFewSurvivors
from secagg.config import RoundConfig
from secagg.driver import run_round
from secagg.graph import min_threshold, tolerated_corrupt


def _config_of(proto: SecAggSum, n: int, d: int, bits: int = 32) -> RoundConfig:
    """The RoundConfig the protocol object itself would run with for n clients."""
    plan = proto.plan(n)
    return RoundConfig(
        n=n,
        t=plan.t,
        d=d,
        bits=bits,
        session=session(),
        k=None if plan.complete else plan.k,
        active=proto.active,
        corrupt=plan.corrupt,
        min_survivors=proto.min_survivors,
    )


@pytest.mark.parametrize(
    ("proto", "n"),
    [
        (SecAggPlusSum(active=True, corrupt=0.0), 20),  # the reviewers' setting: k = 2, t was 1
        (SecAggPlusSum(active=True, corrupt=0.0, k=6), 16),
        (SecAggPlusSum(active=True), 40),
        (SecAggSum(active=True), 12),
    ],
)
def test_split_survivor_lists_reveal_nothing_about_the_target(proto: SecAggSum, n: int) -> None:
    cfg = _config_of(proto, n, d=8)
    x = uniform_inputs(n, 8, cfg.bits)
    target = 3
    view = attack(x, cfg, split_target(cfg, target))
    seeds, mask_keys = view.counts(target)
    assert min(seeds, mask_keys) < cfg.t, f"server holds {seeds} seed and {mask_keys} key shares, t={cfg.t}"
    assert view.recover_input(target) is None
    for v in range(n):  # nor of anybody else
        assert not view.both_revealed(v)


def test_split_attack_with_colluders_at_the_tolerated_bound() -> None:
    """c colluding holders hand over both shares; t > (m + c)/2 still leaves the target safe."""
    n = 10
    c = 3
    t = min_threshold(n, c, active=True)
    cfg = RoundConfig(n=n, t=t, d=4, session=session(), active=True, corrupt=c)
    x = uniform_inputs(n, 4, cfg.bits)
    view = attack(x, cfg, split_target(cfg, 0), corrupt=[7, 8, 9])
    assert not view.both_revealed(0) and view.recover_input(0) is None
    # one colluder more than the configuration tolerates: the same attack succeeds, so the bound is tight
    weak = RoundConfig(n=n, t=t, d=4, session=session(), active=True, corrupt=c)
    told_dropped = (1, 2, 3)
    view = attack(
        x, weak, lambda cl, u3: [v for v in u3 if v != 0] if cl in told_dropped else u3, corrupt=[6, 7, 8, 9]
    )
    assert view.both_revealed(0)
    assert (view.recover_input(0) == x[0]).all()


def test_active_configurations_below_the_bound_are_refused() -> None:
    with pytest.raises(SecAggError, match=r"got t=5 for m=10 share holders and c=2.*want t >= 7"):
        RoundConfig(n=10, t=5, d=1, active=True, corrupt=2)
    with pytest.raises(SecAggError, match=r"want t >= 4"):
        RoundConfig(n=10, t=3, d=1, corrupt=3)  # passive: c colluders alone must not reconstruct
    with pytest.raises(SecAggError, match=r"RoundConfig\.corrupt"):
        RoundConfig(n=10, t=6, d=1, corrupt=10)
    with pytest.raises(SecAggError, match="min_survivors"):
        RoundConfig(n=10, t=6, d=1, min_survivors=5)
    with pytest.raises(SecAggError, match=r"got t=4 for m=9 share holders and c=1.*want t >= 6"):
        SecAggPlusSum(active=True, t=4, k=8).run(np.zeros((12, 2), np.float32))
    assert RoundConfig(n=10, t=7, d=1, active=True, corrupt=3).survivor_floor == 7
    assert RoundConfig(n=10, t=2, d=1).survivor_floor == 5


@pytest.mark.parametrize("active", [False, True])
@pytest.mark.parametrize("k", [None, 4])
def test_clients_refuse_to_unmask_a_small_survivor_list(active: bool, k: int | None) -> None:
    """The server pretends all but three clients dropped: every honest client refuses to answer, so the
    server receives no share at all and cannot unmask the sum of three inputs."""
    n = 12
    size = n if k is None else k + 1
    cfg = RoundConfig(n=n, t=min_threshold(size, 0, active=True), d=4, session=session(), k=k, active=active)
    x = uniform_inputs(n, 4, cfg.bits)
    view = attack(x, cfg, lambda c, u3: sorted({c, *u3[:2]}))
    assert set(view.refused) == set(range(n))
    assert all("TooFewSurvivors" in why for why in view.refused.values())
    assert not view.seed_shares and not view.key_shares


@pytest.mark.parametrize(
    ("k", "active", "t"), [(None, False, 5), (None, True, 7), (4, False, 3), (4, True, 3)]
)
def test_the_server_refuses_a_small_survivor_set(k: int | None, active: bool, t: int) -> None:
    n = 12
    x = uniform_inputs(n, 3, 32)
    drops = {c: "masked_input" for c in range(5, n)}  # 5 of 12 survive: below ceil(12 / 2)
    want = r"U3: got 5 surviving clients; want at least (t|min_survivors)"
    with pytest.raises(TooFewSurvivors, match=want):
        run_round(x, t=t, k=k, active=active, dropouts=drops)


def test_the_survivor_floor_is_a_parameter() -> None:
    x = uniform_inputs(12, 3, 32)
    drops = {c: "masked_input" for c in range(5, 12)}
    out = run_round(x, t=5, dropouts=drops, min_survivors=5)
    assert out.survivors == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("active", [False, True])
def test_a_replayed_unmask_request_with_another_list_is_refused(active: bool) -> None:
    """After answering for the full list, no client answers again for a list without client 0."""
    n = 8
    cfg = RoundConfig(n=n, t=5, d=2, session=session(), active=active)
    x = uniform_inputs(n, 2, cfg.bits)
    view = attack(x, cfg, lambda c, u3: u3, again=lambda c, u3: [v for v in u3 if v != 0] or [c])
    assert all(why.startswith("second request: StageError") for why in view.refused.values())
    assert len(view.refused) == n
    assert view.counts(0) == (n, 0)  # every holder sent client 0's seed share, nobody its key share


def test_consistency_signatures_count_only_the_clients_share_holders() -> None:
    """Signatures of non-neighbours on the list do not make up for missing neighbour signatures."""
    n, k = 16, 4
    cfg = RoundConfig(n=n, t=4, d=2, session=session(), k=k, active=True)
    x = uniform_inputs(n, 2, cfg.bits)
    holders_of_0 = {0, *cfg.graph()[0]}

    def choose(c: int, u3: list[int]) -> list[int]:
        # client 0's share holders (but 0 itself) get a list without client 15; everybody else the full list
        return [v for v in u3 if v != 15] if c in holders_of_0 - {0} else u3

    view = attack(x, cfg, choose)
    # client 0 signed the full list, on which only it of its own holders signed: it must refuse,
    # although 11 clients elsewhere in the graph signed that same list
    assert "consistency signatures from this client's share holders" in view.refused.get(0, "")


def _schedule_strategy() -> st.SearchStrategy[dict]:
    @st.composite
    def build(draw: st.DrawFn) -> dict:
        n = draw(st.integers(5, 40))
        sparse = n >= 8 and draw(st.booleans())
        k = draw(st.sampled_from([k for k in (2, 4, 6) if k < n - 1])) if sparse else None
        size = n if k is None else k + 1
        active = draw(st.booleans())
        corrupt = draw(st.integers(0, max(0, (size - 1) // 3)))
        t = draw(st.integers(min_threshold(size, corrupt, True), size))
        seed = draw(st.integers(0, 2**32 - 1))
        replay = draw(st.booleans())
        return {"n": n, "k": k, "t": t, "active": active, "corrupt": corrupt, "seed": seed, "replay": replay}

    return build()


def _malicious_run(s: dict) -> None:
    n, k, t, corrupt = s["n"], s["k"], s["t"], s["corrupt"]
    r = random.Random(s["seed"])
    cfg = RoundConfig(n=n, t=t, d=2, bits=16, session=session(), k=k, active=s["active"], corrupt=corrupt)
    # colluders: at most `corrupt` of any client's share holders
    colluders: list[int] = []
    for c in r.sample(range(n), n):
        trial = [*colluders, c]
        if all(len({v, *cfg.graph()[v]} & set(trial)) <= corrupt for v in range(n)):
            colluders = trial
    dropped = [c for c in range(n) if r.random() < 0.15]
    lists: dict[int, list[int]] = {}

    def choose(c: int, u3: list[int]) -> list[int]:
        if c not in lists:  # a per-client survivor list: any subset that keeps the client itself
            lists[c] = sorted({c, *(v for v in u3 if r.random() < r.choice([0.5, 0.9, 1.0]))})
        return lists[c]

    x = np.zeros((n, 2), dtype=np.uint64)
    try:
        view = attack(
            x,
            cfg,
            choose,
            corrupt=colluders,
            drop_before_masking=dropped,
            again=(lambda c, u3: [v for v in u3 if v == c or v not in lists[c]]) if s["replay"] else None,
        )
    except TooFewSurvivors:
        return  # a thin neighbourhood stopped the round before unmasking
    honest = [v for v in range(n) if v not in colluders]
    for v in honest:
        seeds, mask_keys = view.counts(v)
        assert not (seeds >= t and mask_keys >= t), (
            f"client {v}: {seeds} seed and {mask_keys} key shares with t={t}, colluders {colluders}"
        )
    assert tolerated_corrupt(cfg.holders_size, t, True) >= corrupt


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_schedule_strategy())
def test_no_schedule_gives_the_server_both_secrets_of_an_honest_client(s: dict) -> None:
    _malicious_run(s)


@pytest.mark.slow
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_schedule_strategy())
def test_no_schedule_gives_the_server_both_secrets_of_an_honest_client_full(s: dict) -> None:
    _malicious_run(s)


def test_clients_recompute_their_neighbourhood_and_refuse_another_graph() -> None:
    """A server that runs client 0 on a graph of its own choosing (here: another session's) is refused:
    the graph is a function of the round's public session, which every client recomputes."""
    from secagg import MalformedMessage, keys
    from secagg import messages as m
    from secagg.client import SecAggClient, Stage
    from secagg.server import SecAggServer

    n, k = 12, 4
    cfg = RoundConfig(n=n, t=3, d=2, session=session(), k=k)
    other = RoundConfig(n=n, t=3, d=2, session=session(), k=k)
    assert cfg.graph()[0] != other.graph()[0]
    signers = [keys.Signer() for _ in range(n)]
    ss = keys.Signer()
    pki = {i: s.verify_key for i, s in enumerate(signers)}
    clients = [SecAggClient(i, np.zeros(2, np.uint64), cfg, signers[i], pki, ss.verify_key) for i in range(n)]
    server = SecAggServer(cfg, ss, pki)
    for c in clients:
        server.receive(c.start())
    server.advance()
    keys_of = {v: (c_pk, s_pk, sig) for v, (c_pk, s_pk, sig) in server._keys.items()}
    chosen = sorted({0, *other.graph()[0]})  # the neighbourhood the server would like client 0 to have
    body = m.encode_keys([(v, *keys_of[v]) for v in chosen])
    forged = m.pack(m.Envelope(m.Kind.KEYS, cfg.session, m.SERVER, 0, body), ss)
    with pytest.raises(MalformedMessage, match="want one of this client's neighbours"):
        clients[0].handle(forged)
    assert clients[0].stage is Stage.ABORTED


def test_inconsistent_survivor_lists_leak_without_an_honest_majority_threshold() -> None:
    """With t <= n/2 (passive, no consistency check) a server that tells clients 0, 1, 2 that client 5
    dropped gets both secrets of client 5 and strips its masks."""
    n = 6
    cfg = RoundConfig(n=n, t=3, d=2, session=session())
    x = uniform_inputs(n, 2, cfg.bits)
    view = attack(x, cfg, lambda c, u3: [v for v in u3 if v != 5] if c in (0, 1, 2) else u3)
    seeds, mask_keys = view.counts(5)
    assert seeds >= 3 and mask_keys >= 3
    assert (view.recover_input(5) == x[5]).all()


def test_active_consistency_check_stops_the_lie() -> None:
    """The same lie told to clients 0 and 1 in the active variant: no share of client 5's mask key
    leaves any client (the lie gathers too few signatures)."""
    n = 6
    cfg = RoundConfig(n=n, t=4, d=1, session=session(), active=True)
    x = uniform_inputs(n, 1, cfg.bits)
    view = attack(x, cfg, lambda c, u3: [v for v in u3 if v != 5] if c in (0, 1) else u3)
    assert view.counts(5)[1] == 0
    assert view.recover_input(5) is None
