"""Fault injection through the channel's hooks (drop, tamper, replay, reorder) against the real parties:
every scenario ends in the exact sum over the honest survivors or a typed abort."""

from __future__ import annotations

import random
import secrets

import numpy as np
import pytest

from secagg import MalformedMessage, ProtocolAbort, keys
from secagg import messages as m
from secagg.channel import Channel, Fault, Frame, drop, reorder, replay, tamper
from secagg.config import RoundConfig
from secagg.driver import DOWN, PHASES, UP, run_round
from secagg.graph import min_threshold
from secagg.server import SecAggServer

N_SCENARIOS = 520
KINDS = ("drop_up", "drop_down", "tamper_up", "tamper_down", "replay_stale", "reorder", "impersonate")
# faults after which the client's message of that phase never reaches the server intact
_LOSES_UPLINK = {"drop_up", "drop_down", "tamper_up", "tamper_down", "impersonate"}


def _name(c: int) -> str:
    return f"client[{c}]"


def replay_stale(party: str) -> Fault:
    """The party's frame of the previous exchange arrives again before this one's (in the first exchange:
    the same frame twice)."""
    sent: list[bytes] = []

    def hook(wire: list[bytes]) -> list[bytes]:
        mine = [d for d in wire if Frame.decode(d).sender == party]
        out = [*sent[-1:], *wire] if sent else [*wire, *mine]
        sent.extend(mine)
        return out

    return hook


def impersonate(phase: str, c: int, other: int) -> Fault:
    """A network attacker rewrites the envelope sender of client c's message in ``phase`` to ``other``
    (it cannot re-sign: the signature still is c's)."""

    def hook(wire: list[bytes]) -> list[bytes]:
        out = []
        for d in wire:
            f = Frame.decode(d)
            if f.kind == UP[phase] and f.sender == _name(c):
                head = list(m._HEADER.unpack_from(f.payload))
                head[4] = other
                payload = m._HEADER.pack(*head) + f.payload[m._HEADER.size :]
                d = Frame(f.round_id, f.sender, f.receiver, f.kind, payload).encode()
            out.append(d)
        return out

    return hook


def make_fault(kind: str, phase: str, c: int, pos: int, n: int) -> Fault:
    """One fault of ``kind`` on client c's frames of ``phase``; tampering flips a bit within the last 96
    bytes of the frame (all inside the signed message: no secagg message is shorter)."""
    up = lambda f: f.kind == UP[phase] and f.sender == _name(c)  # noqa: E731
    down = lambda f: f.kind == DOWN.get(phase) and f.receiver == _name(c)  # noqa: E731
    if kind == "drop_up":
        return drop(up)
    if kind == "drop_down":
        return drop(down)
    if kind == "tamper_up":
        return tamper(up, at=-1 - pos % 96)
    if kind == "tamper_down":
        return tamper(down, at=-1 - pos % 96)
    if kind == "replay_stale":
        return replay_stale(_name(c))
    if kind == "reorder":
        return reorder()
    return impersonate(phase, c, (c + 1 + pos % (n - 1)) % n)


def _scenario(seed: int) -> dict:
    r = random.Random(seed)
    n = r.randint(4, 8)
    active = r.random() < 0.5
    k = r.choice([None, None, 2, 4]) if n >= 6 else None
    if k is not None and k >= n - 1:
        k = None
    size = n if k is None else k + 1
    t = r.randint(min_threshold(size, 0, active=True) if active else max(1, size // 2), size)
    phases = [p for p in PHASES if active or p != "consistency_check"]
    drops = {c: r.choice(phases) for c in range(n) if r.random() < 0.12}
    faults = []
    for _ in range(r.randint(1, 3)):
        kind = r.choice(KINDS)
        phase = r.choice(phases[1:] if kind.endswith("_down") else phases)
        faults.append((kind, phase, r.randrange(n), r.randrange(1 << 16)))
    bits = r.choice([8, 16, 32, 40])
    d = r.randint(1, 6)
    x = np.array([[r.randrange(1 << bits) for _ in range(d)] for _ in range(n)], dtype=np.uint64)
    return {"x": x, "t": t, "k": k, "active": active, "drops": drops, "faults": faults, "bits": bits}


def _check(seed: int) -> str:
    s = _scenario(seed)
    x, bits, t = s["x"], s["bits"], s["t"]
    n = x.shape[0]
    hooks = [make_fault(kind, phase, c, pos, n) for kind, phase, c, pos in s["faults"]]
    try:
        out = run_round(
            x,
            t=t,
            bits=bits,
            k=s["k"],
            active=s["active"],
            dropouts=s["drops"],
            channel=Channel(faults=hooks),
        )
    except ProtocolAbort:
        return "abort"
    want = np.zeros(x.shape[1], dtype=np.uint64)
    for c in out.survivors:
        want = (want + x[c]) & np.uint64((1 << bits) - 1)
    assert (out.sum == want).all(), f"seed {seed}: wrong sum over {out.survivors}"
    assert len(out.survivors) >= max(t, (n + 1) // 2)  # the survivor floor
    # nobody whose masked input never arrived intact is counted as a survivor
    early = PHASES[: PHASES.index("masked_input") + 1]
    for c in out.survivors:
        assert not (c in s["drops"] and s["drops"][c] in early), f"seed {seed}: dropped client {c} counted"
        lost = [f for f in s["faults"] if f[2] == c and f[0] in _LOSES_UPLINK and f[1] in early]
        assert not lost, f"seed {seed}: client {c} counted although its message was destroyed by {lost}"
    # the server never holds t shares of both secrets of one client (needs 2t > m for m share holders)
    if 2 * t > (n if s["k"] is None else s["k"] + 1):
        for v, (seeds, mkeys) in out.revealed.items():
            assert not (seeds >= t and mkeys >= t), f"seed {seed}: both secrets of client {v} revealed"
    return "sum"


@pytest.mark.slow
def test_randomized_fault_scenarios() -> None:
    outcomes = [_check(seed) for seed in range(N_SCENARIOS)]
    # both outcomes occur: the scenarios are neither all fatal nor all harmless
    assert outcomes.count("sum") > N_SCENARIOS // 4
    assert outcomes.count("abort") > 10


def test_randomized_fault_scenarios_quick() -> None:
    outcomes = [_check(seed) for seed in range(10_000, 10_030)]
    assert "sum" in outcomes


@pytest.mark.parametrize(
    ("kind", "error"),
    [("tamper_up", "AuthenticationError"), ("impersonate", "AuthenticationError"), ("drop_up", None)],
)
def test_a_destroyed_advertisement_excludes_only_that_client(kind: str, error: str | None) -> None:
    x = np.arange(12, dtype=np.uint64).reshape(6, 2)
    ch = Channel(faults=[make_fault(kind, "advertise_keys", 2, 4, 6)])
    out = run_round(x, t=3, channel=ch)
    assert out.survivors == [0, 1, 3, 4, 5]
    assert out.sum.tolist() == (x[[0, 1, 3, 4, 5]].sum(axis=0)).tolist()
    if error is None:  # a dropped frame: nothing to refuse, the client is a dropout
        assert out.rejected == []
    else:
        assert out.rejected[0][:2] == ("advertise_keys", "server") and error in out.rejected[0][2]


def test_a_low_order_key_from_a_malicious_client_is_refused_by_the_server() -> None:
    """The client signs its advertisement with its real key, so only the point check can refuse it."""
    n = 4
    cfg = RoundConfig(n=n, t=3, d=2, session=secrets.token_bytes(16))
    signers = [keys.Signer() for _ in range(n)]
    server = SecAggServer(cfg, keys.Signer(), {i: s.verify_key for i, s in enumerate(signers)})
    bad, stmt_pk = bytes(32), keys.KeyPair.generate().pk
    sig = signers[1].sign(m.key_statement(cfg.session, 1, bad, stmt_pk))
    env = m.Envelope(m.Kind.ADVERTISE, cfg.session, 1, m.SERVER, m.encode_advertise(bad, stmt_pk, sig))
    with pytest.raises(MalformedMessage, match="low-order"):
        server.receive(m.pack(env, signers[1]))


def test_stale_replays_and_reordering_are_harmless() -> None:
    x = np.arange(10, dtype=np.uint64).reshape(5, 2)
    out = run_round(x, t=3, channel=Channel(faults=[replay_stale(_name(1)), reorder()]))
    assert out.survivors == [0, 1, 2, 3, 4]
    assert out.sum.tolist() == x.sum(axis=0).tolist()
    assert any(r[2].startswith("StageError: got kind") for r in out.rejected)  # the stale frames
    assert any("a replay?" in r[2] for r in out.rejected)  # the same frame twice in advertise_keys


def test_frames_replayed_from_an_earlier_round_are_refused() -> None:
    x = np.arange(10, dtype=np.uint64).reshape(5, 2)
    wire: list[bytes] = []

    def tap(frames: list[bytes]) -> list[bytes]:
        wire.extend(frames)
        return frames

    first = run_round(x, t=3, channel=Channel(faults=[tap], round_id=1))
    assert first.sum.tolist() == x.sum(axis=0).tolist()
    y = x + 1
    out = run_round(y, t=3, channel=Channel(faults=[replay(wire)], round_id=2))
    assert out.sum.tolist() == y.sum(axis=0).tolist()
    refused = [r for r in out.rejected if "got round 1; want round 2" in r[2]]
    assert refused and all(r[2].startswith("StageError") for r in refused)


def test_tampered_masked_input_is_rejected_not_summed() -> None:
    x = np.arange(10, dtype=np.uint64).reshape(5, 2)
    out = run_round(x, t=3, channel=Channel(faults=[make_fault("tamper_up", "masked_input", 4, 10, 5)]))
    assert out.survivors == [0, 1, 2, 3]
    assert out.sum.tolist() == x[:4].sum(axis=0).tolist()
    assert any("AuthenticationError" in r[2] for r in out.rejected)


def test_a_tampered_server_message_is_rejected_by_its_client() -> None:
    x = np.arange(10, dtype=np.uint64).reshape(5, 2)
    out = run_round(x, t=3, channel=Channel(faults=[make_fault("tamper_down", "masked_input", 2, 7, 5)]))
    assert out.survivors == [0, 1, 3, 4]
    assert out.sum.tolist() == x[[0, 1, 3, 4]].sum(axis=0).tolist()
    assert [r[:2] for r in out.rejected] == [("masked_input", "client[2]")]
    assert "AuthenticationError" in out.rejected[0][2]


def test_the_channel_meters_and_records_every_message() -> None:
    x = np.arange(10, dtype=np.uint64).reshape(5, 2)
    out = run_round(x, t=3)
    assert out.channel is not None
    ch = out.channel
    kinds = {m.peek(msg.payload)[0] for msg in ch.transcript}
    assert kinds == set(m.Kind) - {m.Kind.SURVIVORS, m.Kind.CONSISTENCY}  # passive: no consistency check
    sent = sum(len(msg.payload) for msg in ch.transcript if msg.sender == "client[0]")
    assert sent < ch.meter.total("client[0]").bytes_sent  # plus the frame headers
    assert ch.meter.total("server").bytes_received == sum(
        ch.meter.total(_name(c)).bytes_sent for c in range(5)
    )
