"""Fuzz: every message-passing mechanism with one Hypothesis-chosen message rewritten in flight.

``ckks``, ``paillier`` and ``prio`` through their transport hook ``intercept`` (setup messages
included): one message of a small round is bit-flipped, truncated, extended, swapped with the message
before it, or replayed from the previous round. ``secagg``: the driver's fault injection (tampered
up- and downlink bytes, replays, reorders, duplicate ids) on a Hypothesis-chosen client and phase,
which exercises the client and server message handlers, not only the decoders. ``secagg_ddp``: one or
two client messages (up or down, Hypothesis-chosen client, phase and bytes) rewritten in flight, with the
ring sum checked exactly against the survivors' own encodings. The fault injection into the
mechanisms' rounds is :func:`faults_injected`, the byte mutation :func:`mutating` (one harness).

Contract: the round raises the package's typed error (:class:`secagg.errors.SecAggError`, whose
family holds the CKKS/Paillier setup and upload errors and :class:`secagg.vdaf.errors.VdafError`), or
completes with the correct aggregate over the clients it accepted -- never another exception, never a
silently wrong aggregate, never past the time budget.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable, Iterator, Sequence
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
from secagg import driver as secagg_driver
from secagg.driver import FAULT_KINDS, PHASES, Fault, RoundOutput, run_round
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


@contextlib.contextmanager
def mutating(op: str, val: int) -> Iterator[list[int]]:
    """Every message the driver tampers (``tamper_up`` / ``tamper_down``) is mutated by ``op``
    (:func:`_mutate`), not only one bit flipped; yields the positions of the tampers that happened."""
    fired: list[int] = []

    def mutate(msg: bytes, pos: int) -> bytes:
        fired.append(pos)
        return _mutate(msg, op, pos, val)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(secagg_driver, "_flip", mutate)
        yield fired


@contextlib.contextmanager
def faults_injected(faults: Sequence[Fault]) -> Iterator[list[tuple[np.ndarray, RoundOutput]]]:
    """The secagg-family mechanisms (``protocols.make(...).run``) run their masked sum with the
    driver's ``faults``; yields ``(ring inputs, round output)`` of every masked sum run."""
    from protocols import secagg_ddp, secagg_normbound, secagg_sum

    rounds: list[tuple[np.ndarray, RoundOutput]] = []

    def with_faults(real: Callable[..., RoundOutput]) -> Callable[..., RoundOutput]:
        def run(inputs: np.ndarray, *a: Any, **kw: Any) -> RoundOutput:
            out = real(inputs, *a, **{**kw, "faults": list(faults)})
            rounds.append((np.array(inputs, dtype=np.uint64), out))
            return out

        return run

    with pytest.MonkeyPatch.context() as mp:
        for mod in (secagg_sum, secagg_normbound, secagg_ddp):
            mp.setattr(mod, "run_round", with_faults(mod.run_round))
        yield rounds


FAULT_SPECS = st.lists(
    st.tuples(
        st.sampled_from([k for k in FAULT_KINDS if k != "bad_pubkey"]),
        st.sampled_from(PHASES),
        st.integers(0, 5),
        st.integers(0, 10_000),
    ),
    min_size=1,
    max_size=3,
)


def _faults(specs: list[tuple[str, str, int, int]], active: bool) -> list[Fault]:
    out = []
    for kind, phase, client, other in specs:
        if kind == "tamper_down" and phase == "advertise_keys":
            continue
        if phase == "consistency_check" and not active:
            phase = "unmasking"
        out.append(Fault(kind, phase, client, other))
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
    """The driver's faults, with each tampered message mutated by ``op`` (not only one bit flipped):
    the client and server handlers refuse it typed, and the sum is over the survivors."""
    n, bits = 5, 32
    x = np.random.default_rng(seed).integers(0, 2**bits, size=(n, 6), dtype=np.uint64)
    faults = _faults(specs, active)

    def check(out: Any) -> bool:
        want = x[sorted(out.survivors)].sum(axis=0, dtype=np.uint64) % np.uint64(2**bits)
        return len(out.survivors) >= 3 and np.array_equal(np.asarray(out.sum, np.uint64), want)

    with mutating(op, val):
        res, detail = outcome(
            "handlers/secagg",
            lambda: run_round(x, t=3, bits=bits, active=active, faults=faults),
            (SecAggError,),
            check,
        )
    expect("handlers/secagg", res, detail, (active, faults, op, val))


SECAGG_MECHS: dict[str, dict[str, Any]] = {
    "secagg": {},
    "secagg_plus": {},
    "secagg_normbound": {"bound": 2.0},
}


@FUZZ
@given(seed=st.integers(0, 2**32 - 1), mech=st.sampled_from(sorted(SECAGG_MECHS)), specs=FAULT_SPECS)
def test_secagg_mechanisms_under_faults(seed: int, mech: str, specs: list[tuple[str, str, int, int]]) -> None:
    """``protocols.make(mech, rule=Mean())`` with the driver's faults injected into its round: the
    released mean is the mean over the clients the round accepted, or the round aborts typed."""
    x = np.random.default_rng(seed).uniform(-0.5, 0.5, size=(6, 8))
    proto = protocols.make(mech, rule=robust.Mean(), **SECAGG_MECHS[mech])
    inner = getattr(proto, "inner", proto)
    active = bool(getattr(inner, "active", False))
    faults = _faults(specs, active)
    # fixed point: normbound truncates each entry to 1/scale (|error of the mean| < 1/scale)
    tol = 1.0 / inner.config.scale if mech == "secagg_normbound" else 1e-3

    area = f"inflight/{mech}"
    with faults_injected(faults):
        res, detail = outcome(
            area, lambda: proto.run(x), (SecAggError,), check_ref(x, tol, lambda r: r.mean(axis=0)), 60.0
        )
    expect(area, res, detail, (mech, faults))


#: One in-flight rewrite of a client's message: ``(kind, phase, client, position)``; ``tamper_up``
#: rewrites the client's message to the server, ``tamper_down`` the server's message to the client.
REWRITES = st.lists(
    st.tuples(
        st.sampled_from(["tamper_up", "tamper_down"]),
        st.sampled_from(PHASES),
        st.integers(0, 4),
        st.integers(0, 10_000),
    ),
    min_size=1,
    max_size=2,
    unique_by=lambda s: s[3],  # the position tells which rewrite happened
)


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
    """``protocols.make("secagg_ddp")`` with one or two messages of Hypothesis-chosen clients and
    phases rewritten in flight by ``op``: every rewrite that happened is refused by its receiver in
    its phase (a typed ``ProtocolAbort`` in the round's record; the client then counts as dropped),
    and the round either aborts with :class:`SecAggError` or releases the honest survivors' aggregate.

    Honest, exactly: the ring sum equals ``sum_{u in U3} enc_u mod 2^bits`` over the survivors' own
    encodings. Honest, released: with noise multiplier 0 the mean is the survivors' mean of
    ``clip_l2(x_u, C)`` up to the grid, ``|err|_2 <= gamma sqrt(D)`` (each rotated coordinate of each
    client rounds by less than one step gamma; the rotation is orthogonal), plus float32 rounding.
    """
    n, d = 5, 8
    x = np.random.default_rng(seed).uniform(-0.5, 0.5, size=(n, d))
    proto = protocols.make("secagg_ddp", rule=robust.Mean(), noise_multiplier=0.0, active=active)
    cfg = proto.config(n, d)
    tol = cfg.gamma * np.sqrt(cfg.padded_dim) + 1e-6
    faults = _faults(specs, active)

    def check(res: Any) -> bool:
        ((enc, out),) = rounds
        u3 = sorted(out.survivors)
        ring = enc[u3].sum(axis=0, dtype=np.uint64) % np.uint64(2**cfg.bits)
        honest = np.stack([clip_l2(r, cfg.clip) for r in x[u3]]).mean(axis=0)
        refused = {(ph, party) for ph, party, _ in out.rejected}
        receiver = {"tamper_up": lambda c: "server", "tamper_down": lambda c: f"client[{c}]"}
        return (
            all((f.phase, receiver[f.kind](f.client)) in refused for f in faults if f.other in fired)
            and sorted(res.accepted) == u3
            and np.array_equal(np.asarray(out.sum, np.uint64), ring)
            and np.allclose(np.asarray(res.aggregate, np.float64), honest, rtol=0.0, atol=tol)
        )

    area = "inflight/secagg_ddp"
    with mutating(op, val) as fired, faults_injected(faults) as rounds:
        res, detail = outcome(area, lambda: proto.run(x), (SecAggError,), check, 60.0)
    expect(area, res, detail, (active, faults, op, val, fired))
