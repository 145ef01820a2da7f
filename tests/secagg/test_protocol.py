"""The masking protocol: masks cancel under dropouts, thresholds abort, stage tables, bad shares."""

from __future__ import annotations

import secrets

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg import AuthenticationError, MalformedMessage, ProtocolAbort, StageError, TooFewSurvivors, keys
from secagg import messages as m
from secagg.client import CLIENT_TRANSITIONS, SecAggClient, Stage
from secagg.config import RoundConfig
from secagg.driver import PHASES, run_round
from secagg.graph import min_threshold
from secagg.server import SERVER_TRANSITIONS, SecAggServer, ServerStage


def _ring_sum(x: np.ndarray, rows: list[int], bits: int) -> np.ndarray:
    total = np.zeros(x.shape[1], dtype=np.uint64)
    for r in rows:
        total = (total + x[r]) & np.uint64((1 << bits) - 1)
    return total


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_masks_cancel_over_survivors(data: st.DataObject) -> None:
    n = data.draw(st.integers(3, 7))
    d = data.draw(st.integers(1, 9))
    bits = data.draw(st.sampled_from([3, 16, 32, 33, 62]))
    k = data.draw(st.sampled_from([None, 2]) if n > 3 else st.just(None))
    active = data.draw(st.booleans())
    size = n if k is None else k + 1
    t = data.draw(st.integers(min_threshold(size, 0, active=True) if active else 1, size))
    x = np.array(
        data.draw(st.lists(st.integers(0, 2**bits - 1), min_size=n * d, max_size=n * d)), dtype=np.uint64
    ).reshape(n, d)
    phases = [p for p in PHASES if active or p != "consistency_check"]
    drops = data.draw(st.dictionaries(st.integers(0, n - 1), st.sampled_from(phases), max_size=n))
    try:
        out = run_round(x, t=t, bits=bits, k=k, active=active, dropouts=drops)
    except TooFewSurvivors:
        return
    late = {"consistency_check", "unmasking"}
    want_u3 = [c for c in range(n) if c not in drops or drops[c] in late]
    if k is None:
        assert out.survivors == want_u3
    else:  # SecAgg+: a client whose neighbourhood thinned below t stops itself
        assert set(out.survivors) <= set(want_u3)
        stopped = {p for _, p, err in out.rejected if err.startswith("TooFewSurvivors")}
        assert {f"client[{c}]" for c in set(want_u3) - set(out.survivors)} <= stopped
    assert (out.sum == _ring_sum(x, out.survivors, bits)).all()


def test_no_dropout_sum_is_the_plain_sum() -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 2**32, size=(6, 50), dtype=np.uint64)
    out = run_round(x, t=4)
    assert out.survivors == list(range(6)) and out.dropped == []
    assert (out.sum == _ring_sum(x, list(range(6)), 32)).all()


def test_masked_inputs_look_random() -> None:
    """What the server receives from one client is far from its input (the masks are applied)."""
    n, d = 4, 2000
    x = np.zeros((n, d), dtype=np.uint64)
    cfg, clients, server = _parties(x, t=3)
    msgs = [c.start() for c in clients]
    for b in msgs:
        server.receive(b)
    down = server.advance()
    msgs = [clients[i].handle(down[i]) for i in range(n)]
    for b in msgs:
        server.receive(b)
    down = server.advance()
    masked = m.unpack(
        clients[0].handle(down[0]),
        session=cfg.session,
        receiver=m.SERVER,
        verify_key_of=lambda s: None if s else clients[0]._signer.verify_key,
    )
    y = np.frombuffer(masked.body, dtype="<u4")
    assert (y != 0).mean() > 0.99 and abs(y.astype(np.float64).mean() / 2**32 - 0.5) < 0.05


@pytest.mark.parametrize("drop_phase", ["advertise_keys", "share_keys", "masked_input"])
def test_too_few_survivors_says_how_many(drop_phase: str) -> None:
    x = np.zeros((5, 3), dtype=np.uint64)
    with pytest.raises(TooFewSurvivors, match="got 2 surviving clients; want at least t=3"):
        run_round(x, t=3, dropouts={0: drop_phase, 1: drop_phase, 2: drop_phase})


def test_too_few_unmasking_replies_aborts() -> None:
    x = np.zeros((5, 3), dtype=np.uint64)
    with pytest.raises(TooFewSurvivors, match="U5: got 2"):
        run_round(x, t=3, dropouts={0: "unmasking", 1: "unmasking", 2: "unmasking"})


def test_secagg_plus_aborts_when_a_neighbourhood_is_too_thin() -> None:
    # k = 2: each client's secrets are held by 3 clients; t = 3 needs all of them.
    x = np.zeros((8, 2), dtype=np.uint64)
    with pytest.raises(TooFewSurvivors, match="want at least t=3"):
        run_round(x, t=3, k=2, dropouts={0: "masked_input"})


# ---------------------------------------------------------------------------------------------------
# hand-built parties


def _parties(
    x: np.ndarray, t: int, *, active: bool = False, k: int | None = None
) -> tuple[RoundConfig, list[SecAggClient], SecAggServer]:
    n, d = x.shape
    cfg = RoundConfig(n=n, t=t, d=d, session=secrets.token_bytes(16), k=k, active=active)
    signers = [keys.Signer() for _ in range(n)]
    ss = keys.Signer()
    pki = {i: s.verify_key for i, s in enumerate(signers)}
    clients = [SecAggClient(i, x[i], cfg, signers[i], pki, ss.verify_key) for i in range(n)]
    return cfg, clients, SecAggServer(cfg, ss, pki)


def test_wrong_share_from_a_malicious_client_is_caught_by_the_commitment() -> None:
    x = np.arange(12, dtype=np.uint64).reshape(4, 3)
    cfg, clients, server = _parties(x, t=3)
    up = {c.cid: c.start() for c in clients}
    for _ in range(3):  # keys, shares, masked inputs
        for b in up.values():
            server.receive(b)
        down = server.advance()
        up = {i: clients[i].handle(b) for i, b in down.items()}
    # client 0 (first share holder) lies about its share of client 2's self-mask seed, signing it properly
    env = m.unpack(
        up[0], session=cfg.session, receiver=m.SERVER, verify_key_of=lambda s: clients[0]._signer.verify_key
    )
    entries = m.decode_unmask(env.body, 4)
    bad = [
        (v, w, (int.from_bytes(s, "little") ^ 1).to_bytes(33, "little") if v == 2 else s)
        for v, w, s in entries
    ]
    up[0] = m.pack(m.Envelope(env.kind, env.session, 0, m.SERVER, m.encode_unmask(bad)), clients[0]._signer)
    for b in up.values():
        server.receive(b)
    with pytest.raises(AuthenticationError, match="client 2's self-mask seed"):
        server.advance()
    assert server.stage is ServerStage.ABORTED


@pytest.mark.parametrize("stage", list(Stage))
@pytest.mark.parametrize("kind", list(m.Kind))
def test_client_rejects_every_illegal_transition(stage: Stage, kind: m.Kind) -> None:
    x = np.zeros((3, 2), dtype=np.uint64)
    cfg, clients, _ = _parties(x, t=2)
    c = clients[0]
    c.stage = stage
    server_signer = keys.Signer()
    c._server_key = server_signer.verify_key
    msg = m.pack(m.Envelope(kind, cfg.session, m.SERVER, 0, b""), server_signer)
    legal = (stage, kind) in CLIENT_TRANSITIONS and kind is not m.Kind.SURVIVORS
    if legal:
        # legal stage, empty body: rejected by body validation instead, which aborts the client
        with pytest.raises(ProtocolAbort):
            c.handle(msg)
        return
    with pytest.raises(StageError, match="got"):
        c.handle(msg)
    assert c.stage is stage  # a rejected message changes nothing


@pytest.mark.parametrize("stage", [s for s in ServerStage if s in SERVER_TRANSITIONS])
@pytest.mark.parametrize("kind", list(m.Kind))
def test_server_rejects_every_illegal_kind(stage: ServerStage, kind: m.Kind) -> None:
    x = np.zeros((3, 2), dtype=np.uint64)
    cfg, clients, server = _parties(x, t=2, active=True)
    server.stage = stage
    msg = m.pack(m.Envelope(kind, cfg.session, 1, m.SERVER, b""), clients[1]._signer)
    if SERVER_TRANSITIONS[stage][0] is kind:
        with pytest.raises(ProtocolAbort):  # legal kind, empty body
            server.receive(msg)
        return
    with pytest.raises(StageError, match=f"got {kind.name}"):
        server.receive(msg)


def test_server_rejects_duplicates_outsiders_and_closed_stages() -> None:
    x = np.zeros((4, 2), dtype=np.uint64)
    cfg, clients, server = _parties(x, t=2)
    up = {c.cid: c.start() for c in clients[:3]}
    for b in up.values():
        server.receive(b)
    with pytest.raises(StageError, match="second ADVERTISE"):
        server.receive(up[0])
    down = server.advance()
    assert sorted(down) == [0, 1, 2]
    late = clients[3].start()
    with pytest.raises(StageError, match="got ADVERTISE"):
        server.receive(late)
    replies = {i: clients[i].handle(b) for i, b in down.items()}
    server.receive(replies[0])
    # client 3 never advertised: its messages are refused even if well-formed
    forged = m.pack(m.Envelope(m.Kind.SHARES, cfg.session, 3, m.SERVER, b""), clients[3]._signer)
    with pytest.raises(StageError, match="not in the previous stage"):
        server.receive(forged)


def test_client_refuses_keys_substituted_by_the_server() -> None:
    x = np.zeros((3, 2), dtype=np.uint64)
    cfg, clients, server = _parties(x, t=2)
    for c in clients:
        server.receive(c.start())
    down = server.advance()
    env = m.unpack(
        down[0], session=cfg.session, receiver=0, verify_key_of=lambda s: server._signer.verify_key
    )
    entries = m.decode_keys(env.body, 3)
    other = keys.KeyPair.generate().pk
    entries[1] = (entries[1][0], other, entries[1][2], entries[1][3])
    forged = m.pack(m.Envelope(m.Kind.KEYS, cfg.session, m.SERVER, 0, m.encode_keys(entries)), server._signer)
    with pytest.raises(AuthenticationError):
        clients[0].handle(forged)
    assert clients[0].stage is Stage.ABORTED
    with pytest.raises(StageError):
        clients[0].handle(down[0])


def test_config_validation() -> None:
    with pytest.raises(Exception, match="want an int in \\[1, 4\\]"):
        RoundConfig(n=4, t=5, d=1)
    with pytest.raises(Exception, match="want None or an even int"):
        RoundConfig(n=8, t=2, d=1, k=3)
    with pytest.raises(MalformedMessage):
        m.unpack(b"x" * 10, session=bytes(16), receiver=0, verify_key_of=lambda s: None)
