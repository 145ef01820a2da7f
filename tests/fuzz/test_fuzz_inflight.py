"""Fuzz: every message-passing mechanism with one Hypothesis-chosen message rewritten in flight.

``ckks``, ``paillier`` and ``prio`` through their transport hook ``intercept`` (setup messages
included): one message of a small round is bit-flipped, truncated, extended, swapped with the message
before it, or replayed from the previous round. ``secagg``: the channel's fault hooks (dropped and
rewritten up- and downlink messages, stale replays, reorders) on a Hypothesis-chosen client and phase,
which exercises the client and server message handlers, not only the decoders. ``secagg_ddp``: one or
two client messages (up or down, Hypothesis-chosen client, phase and bytes) rewritten in flight, with the
ring sum checked exactly against the survivors' own encodings.

Contract: the round raises the package's typed error (:class:`secagg.errors.SecAggError`, whose
family holds the CKKS/Paillier setup and upload errors and :class:`secagg.vdaf.errors.VdafError`), or
completes with the correct aggregate over the clients it accepted -- never another exception, never a
silently wrong aggregate, never past the time budget.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch
from fuzz_contract import FUZZ, expect, outcome
from hypothesis import given
from hypothesis import strategies as st
from test_fuzz_secagg import MUTATIONS, _mutate

import protocols
import robust
from dp.distributed import clip_l2
from protocols.ckks.driver import Message
from secagg.channel import Channel, Fault, Frame, drop, reorder
from secagg.driver import DOWN, PHASES, UP, RoundOutput, run_round
from secagg.errors import AuthenticationError, SecAggError

OPS = ("flip", "truncate", "extend", "swap", "replay")


def rewrite(payload: bytes, op: str, pos: int, earlier: bytes | None, before: bytes | None) -> bytes:
    """One in-flight rewrite of ``payload``; ``earlier``: the same message one round before,
    ``before``: the message sent just before this one (both ``None`` when there is none)."""
    if not payload:
        return b"\x00"
    p = pos % len(payload)
    if op == "flip":
        b = bytearray(payload)
        b[p] ^= 1 << (pos % 8)
        return bytes(b)
    if op == "truncate":
        return payload[:p]
    if op == "extend":
        return payload + bytes([pos % 256]) * (1 + pos % 7)
    if op == "replay" and earlier is not None:
        return earlier
    if before is not None and before != payload:  # swap (and replay without an earlier round)
        return before
    return payload[:p]


class Rewriter:
    """Records two rounds' messages and rewrites the ``index``-th message of round ``target``."""

    def __init__(self, target: int, index: int, op: str, pos: int) -> None:
        self.target, self.index, self.op, self.pos = target, index, op, pos
        self.round = 1
        self.sent: dict[int, list[bytes]] = {1: [], 2: []}
        self.hit: tuple[int, int] | None = None

    def __call__(self, payload: bytes) -> bytes:
        log = self.sent[self.round]
        k = len(log)
        log.append(bytes(payload))
        if self.round != self.target or k != self.index:
            return payload
        earlier_log = self.sent.get(self.round - 1, [])
        earlier = earlier_log[k] if k < len(earlier_log) else None
        before = log[k - 1] if k else None
        self.hit = (self.round, k)
        return rewrite(payload, self.op, self.pos, earlier, before)


def median(rows: np.ndarray) -> np.ndarray:
    return np.asarray(robust.Median()(torch.as_tensor(rows, dtype=torch.float32)), dtype=np.float64)


def check_ref(x: np.ndarray, tol: float, ref: Callable[[np.ndarray], np.ndarray]) -> Callable[[Any], bool]:
    """The round's aggregate is finite and equals ``ref`` of the accepted clients' rows."""

    def check(res: Any) -> bool:
        agg = np.asarray(res.aggregate, dtype=np.float64)
        return bool(
            res.accepted
            and np.isfinite(agg).all()
            and np.allclose(agg, ref(x[sorted(res.accepted)]), atol=tol)
        )

    return check


def two_rounds(proto: Any, x: np.ndarray, rw: Rewriter, set_hook: Hook, both: bool = False) -> Any:
    """Round 1, then round 2 on the same parties (setup happens in round 1 only)."""
    set_hook(rw)
    res = proto.run(x)
    if rw.target == 1 and not both:
        return res
    rw.round = 2
    return proto.run(x)


Hook = Callable[[Rewriter], None]


def _intercept(proto: Any) -> tuple[Any, Hook]:
    inner = getattr(proto, "inner", proto)

    def set_hook(rw: Rewriter) -> None:
        inner.intercept = lambda m: rw(m.payload)

    return proto, set_hook


def _quiet(make: Callable[[], Any]) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # paillier's "1024-bit key: tests only"
        return make()


#: mechanism -> (a fresh (protocol, hook setter), the aggregate's tolerance); the reference is the
#: mean of the accepted rows (a selection rule: the rows it selected), or their median.
MECHS: dict[str, tuple[Callable[[], tuple[Any, Hook]], float]] = {
    "ckks": (lambda: _intercept(protocols.make("ckks", rule=robust.Mean())), 1e-3),
    "ckks_multi_krum": (lambda: _intercept(protocols.make("ckks", rule=robust.MultiKrum(f=1))), 1e-3),
    "ckks_median": (lambda: _intercept(protocols.make("ckks", rule=robust.Median())), 1e-3),
    "paillier": (
        lambda: _intercept(_quiet(lambda: protocols.make("paillier", rule=robust.Mean(), key_bits=1024))),
        1e-4,
    ),
    "prio": (
        lambda: _intercept(protocols.make("prio", rule=robust.Mean(), bound=1.0, wr_checks=20)),
        2.0**-10,
    ),
}
X: dict[str, Callable[[int], np.ndarray]] = {
    "ckks": lambda s: np.random.default_rng(s).uniform(-0.5, 0.5, size=(4, 12)),
    "ckks_multi_krum": lambda s: np.random.default_rng(s).uniform(-0.5, 0.5, size=(5, 12)),
    "ckks_median": lambda s: np.random.default_rng(s).uniform(-0.5, 0.5, size=(5, 12)),
    "paillier": lambda s: np.random.default_rng(s).uniform(-0.5, 0.5, size=(4, 12)),
    "prio": lambda s: np.random.default_rng(s).uniform(-0.2, 0.2, size=(3, 4)),
}


@functools.cache
def message_counts(mech: str) -> tuple[int, int]:
    """How many messages rounds 1 and 2 of a clean run carry (the index is taken modulo these)."""
    make, _ = MECHS[mech]
    proto, set_hook = make()
    rw = Rewriter(3, 0, "flip", 0)  # target round 3: records, never rewrites
    two_rounds(proto, X[mech](0), rw, set_hook, both=True)
    return len(rw.sent[1]), len(rw.sent[2])


@FUZZ
@given(
    seed=st.integers(0, 2**32 - 1),
    mech=st.sampled_from(sorted(MECHS)),
    target=st.sampled_from([1, 2]),
    index=st.integers(0, 10_000),
    op=st.sampled_from(OPS),
    pos=st.integers(0, 100_000),
)
def test_round_with_a_message_rewritten(
    seed: int, mech: str, target: int, index: int, op: str, pos: int
) -> None:
    make, tol = MECHS[mech]
    ref = median if mech == "ckks_median" else (lambda r: r.mean(axis=0))
    k = index % message_counts(mech)[target - 1]
    proto, set_hook = make()
    x = X[mech](seed)
    rw = Rewriter(target, k, op, pos)
    area = f"inflight/{mech}"
    res, detail = outcome(
        area,
        lambda: two_rounds(proto, x, rw, set_hook),
        (SecAggError,),
        check_ref(x, tol, ref),
        60.0,
    )
    assert rw.hit is not None or res != "ok", "the rewrite never happened"
    expect(area, res, detail, (mech, target, k, op, pos, rw.hit))


@pytest.mark.parametrize(
    "rewrite",
    [
        lambda p: p[:5] + bytes([p[5] ^ 1]) + p[6:],  # was: a silently wrong mean
        lambda p: p[:2],  # was: struct.error "unpack requires a buffer of 4 bytes"
    ],
    ids=["flip", "truncate"],
)
def test_prio_tampered_aggregate_share_is_refused(rewrite: Callable[[bytes], bytes]) -> None:
    """Findings: one flipped bit of the helper's aggregate share made prio's released mean silently
    wrong (every client accepted); a shortened one raised an untyped struct.error. The leader-helper
    link is now authenticated."""
    x = X["prio"](0)

    def hook(m: Message) -> bytes:
        return rewrite(m.payload) if m.phase == "aggregate" else m.payload

    proto = protocols.make("prio", rule=robust.Mean(), bound=1.0, wr_checks=20)
    proto.inner.intercept = hook
    with pytest.raises(AuthenticationError, match="aggregate message from helper to leader"):
        proto.run(x)


def test_prio_server_message_replayed_from_another_round_is_refused() -> None:
    """A verdict recorded in one round and replayed in the next does not verify (the round's context
    and the message's sequence number are under the tag)."""
    x = X["prio"](1)
    seen: list[bytes] = []

    def record(m: Message) -> bytes:
        if m.phase == "verify" and m.sender == "leader":
            seen.append(m.payload)
        return m.payload

    proto = protocols.make("prio", rule=robust.Mean(), bound=1.0, wr_checks=20)
    proto.inner.intercept = record
    proto.run(x)
    first = seen[0]
    proto.inner.intercept = lambda m: first if m.phase == "verify" and m.sender == "leader" else m.payload
    with pytest.raises(AuthenticationError, match="verify message from leader to helper"):
        proto.run(x)


FAULT_SPECS = st.lists(
    st.tuples(
        st.sampled_from(["drop_up", "drop_down", "mutate_up", "mutate_down", "replay", "reorder"]),
        st.sampled_from(PHASES),
        st.integers(0, 5),
        st.integers(0, 10_000),
    ),
    min_size=1,
    max_size=3,
)


def _rewriting(pred: Callable[[Frame], bool], op: str, pos: int, val: int) -> Fault:
    """Hook: the secagg message inside each frame satisfying ``pred`` is rewritten by ``_mutate``."""

    def hook(wire: list[bytes]) -> list[bytes]:
        out = []
        for d in wire:
            f = Frame.decode(d)
            if pred(f):
                d = Frame(f.round_id, f.sender, f.receiver, f.kind, _mutate(f.payload, op, pos, val)).encode()
            out.append(d)
        return out

    return hook


def _stale(party: str) -> Fault:
    """Hook: the party's frames of the previous exchange arrive again first (the first: twice)."""
    last: list[bytes] = []

    def hook(wire: list[bytes]) -> list[bytes]:
        mine = [d for d in wire if Frame.decode(d).sender == party]
        out = [*last, *wire] if last else [*wire, *mine]
        if mine:
            last[:] = mine
        return out

    return hook


def _faults(
    specs: list[tuple[str, str, int, int]], active: bool, op: str = "flip", val: int = 1
) -> list[Fault]:
    out: list[Fault] = []
    for kind, phase, client, pos in specs:
        if phase == "consistency_check" and not active:
            phase = "unmasking"
        name = f"client[{client}]"
        up = functools.partial(lambda f, k, c: f.kind == k and f.sender == c, k=UP[phase], c=name)
        down = functools.partial(lambda f, k, c: f.kind == k and f.receiver == c, k=DOWN.get(phase), c=name)
        if kind in ("drop_up", "drop_down"):
            out.append(drop(up if kind == "drop_up" else down))
        elif kind in ("mutate_up", "mutate_down"):
            out.append(_rewriting(up if kind == "mutate_up" else down, op, pos, val))
        else:
            out.append(_stale(name) if kind == "replay" else reorder())
    return out


@FUZZ
@given(
    seed=st.integers(0, 2**32 - 1),
    active=st.booleans(),
    specs=FAULT_SPECS,
    op=MUTATIONS,
    val=st.integers(0, 255),
)
def test_secagg_handlers_under_faults(
    seed: int, active: bool, specs: list[tuple[str, str, int, int]], op: str, val: int
) -> None:
    """The channel's faults, with each rewritten message mutated by ``op`` (not only one bit flipped):
    the client and server handlers refuse it typed, and the sum is over the survivors."""
    n, bits = 5, 32
    x = np.random.default_rng(seed).integers(0, 2**bits, size=(n, 6), dtype=np.uint64)
    faults = _faults(specs, active, op, val)

    def check(out: Any) -> bool:
        want = x[sorted(out.survivors)].sum(axis=0, dtype=np.uint64) % np.uint64(2**bits)
        return len(out.survivors) >= 3 and np.array_equal(np.asarray(out.sum, np.uint64), want)

    res, detail = outcome(
        "handlers/secagg",
        lambda: run_round(x, t=3, bits=bits, active=active, channel=Channel(faults=faults)),
        (SecAggError,),
        check,
    )
    expect("handlers/secagg", res, detail, (active, specs, op, val))


SECAGG_MECHS: dict[str, dict[str, Any]] = {
    "secagg": {},
    "secagg_plus": {},
    "secagg_normbound": {"bound": 2.0},
}


@FUZZ
@given(seed=st.integers(0, 2**32 - 1), mech=st.sampled_from(sorted(SECAGG_MECHS)), specs=FAULT_SPECS)
def test_secagg_mechanisms_under_faults(seed: int, mech: str, specs: list[tuple[str, str, int, int]]) -> None:
    """``protocols.make(mech, rule=Mean(), faults=...)``: the channel's faults on its round's frames;
    the released mean is the mean over the clients the round accepted, or the round aborts typed."""
    x = np.random.default_rng(seed).uniform(-0.5, 0.5, size=(6, 8))
    faults = _faults(specs, active=False)
    proto = protocols.make(mech, rule=robust.Mean(), faults=faults, **SECAGG_MECHS[mech])
    inner = getattr(proto, "inner", proto)
    # fixed point: normbound truncates each entry to 1/scale (|error of the mean| < 1/scale)
    tol = 1.0 / inner.config.scale if mech == "secagg_normbound" else 1e-3
    area = f"inflight/{mech}"
    res, detail = outcome(
        area, lambda: proto.run(x), (SecAggError,), check_ref(x, tol, lambda r: r.mean(axis=0)), 60.0
    )
    expect(area, res, detail, (mech, specs))


#: One in-flight rewrite of a client's message: ``(direction, phase, client, position)``; ``mutate_up``
#: rewrites the client's message to the server, ``mutate_down`` the server's message to the client.
REWRITES = st.lists(
    st.tuples(
        st.sampled_from(["mutate_up", "mutate_down"]),
        st.sampled_from(PHASES),
        st.integers(0, 4),
        st.integers(0, 10_000),
    ),
    min_size=1,
    max_size=2,
    unique_by=lambda s: (s[0], s[1], s[2]),
)


@contextlib.contextmanager
def masked_sums(module: Any) -> Iterator[list[tuple[np.ndarray, RoundOutput]]]:
    """Records ``(ring inputs, round output)`` of every masked sum ``module`` runs."""
    rounds: list[tuple[np.ndarray, RoundOutput]] = []
    real = module.run_round

    def run(inputs: np.ndarray, *a: Any, **kw: Any) -> RoundOutput:
        out = real(inputs, *a, **kw)
        rounds.append((np.array(inputs, dtype=np.uint64), out))
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(module, "run_round", run)
        yield rounds


@FUZZ
@given(
    seed=st.integers(0, 2**32 - 1),
    active=st.booleans(),
    specs=REWRITES,
    op=MUTATIONS,
    val=st.integers(0, 255),
)
def test_secagg_ddp_with_messages_rewritten(
    seed: int, active: bool, specs: list[tuple[str, str, int, int]], op: str, val: int
) -> None:
    """``protocols.make("secagg_ddp", faults=...)`` with one or two messages of Hypothesis-chosen
    clients and phases rewritten in flight by ``op``: every rewritten message that changed is refused
    by its receiver in its phase (recorded in the round's ``rejected``; the client then counts as
    dropped), and the round either aborts with :class:`SecAggError` or releases the honest survivors'
    aggregate.

    Honest, exactly: the ring sum equals ``sum_{u in U3} enc_u mod 2^bits`` over the survivors' own
    encodings. Honest, released: with noise multiplier 0 the mean is the survivors' mean of
    ``clip_l2(x_u, C)`` up to the grid, ``|err|_2 <= gamma sqrt(D)`` (each rotated coordinate of each
    client rounds by less than one step gamma; the rotation is orthogonal), plus float32 rounding.
    """
    from protocols import secagg_ddp

    n, d = 5, 8
    x = np.random.default_rng(seed).uniform(-0.5, 0.5, size=(n, d))
    fired: list[tuple[str, str]] = []  # (phase, receiver) of every frame whose payload changed
    faults: list[Fault] = []
    for direction, phase, client, pos in specs:
        if phase == "consistency_check" and not active:
            phase = "unmasking"
        name = f"client[{client}]"
        kind = UP[phase] if direction == "mutate_up" else DOWN.get(phase)
        end = "sender" if direction == "mutate_up" else "receiver"
        pred = functools.partial(lambda f, k, e, c: f.kind == k and getattr(f, e) == c, k=kind, e=end, c=name)
        faults.append(_recording(_rewriting(pred, op, pos, val), phase, fired))
    proto = protocols.make(
        "secagg_ddp", rule=robust.Mean(), noise_multiplier=0.0, active=active, faults=faults
    )
    cfg = proto.config(n, d)
    tol = cfg.gamma * np.sqrt(cfg.padded_dim) + 1e-6

    def check(res: Any) -> bool:
        ((enc, out),) = rounds
        u3 = sorted(out.survivors)
        ring = enc[u3].sum(axis=0, dtype=np.uint64) % np.uint64(2**cfg.bits)
        honest = np.stack([clip_l2(r, cfg.clip) for r in x[u3]]).mean(axis=0)
        refused = {(ph, party) for ph, party, _ in out.rejected}
        return (
            all(hit in refused for hit in fired)
            and sorted(res.accepted) == u3
            and np.array_equal(np.asarray(out.sum, np.uint64), ring)
            and np.allclose(np.asarray(res.aggregate, np.float64), honest, rtol=0.0, atol=tol)
        )

    area = "inflight/secagg_ddp"
    with masked_sums(secagg_ddp) as rounds:
        res, detail = outcome(area, lambda: proto.run(x), (SecAggError,), check, 60.0)
    expect(area, res, detail, (active, specs, op, val, fired))


def _recording(hook: Fault, phase: str, fired: list[tuple[str, str]]) -> Fault:
    """``hook``, noting ``(phase, receiver)`` of every frame it changed."""

    def run(wire: list[bytes]) -> list[bytes]:
        out = hook(wire)
        for before, after in zip(wire, out):
            if before != after:
                f = Frame.decode(before)
                fired.append((phase, f.receiver))
        return out

    return run
