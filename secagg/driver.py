"""In-process driver: n clients and a server exchanging bytes, with dropouts and fault injection.

The driver is a thin orchestrator: it creates the parties (and the PKI of signing keys), carries each
message from sender to receiver through an optional meter, applies the requested dropouts and faults to
the bytes in flight, and holds no protocol logic. A party that rejects a message raises a typed
``ProtocolAbort`` subclass; the driver records it in :attr:`RoundOutput.rejected` and goes on (the
message is lost, as on a network). An abort of the server ends the round with that exception.

Phases, in order: ``advertise_keys``, ``share_keys``, ``masked_input``, ``consistency_check`` (active
variant only), ``unmasking``. A dropout ``{client: phase}`` means the client sends nothing from that
phase on. Fault kinds (:class:`Fault`), each applied to one client in one phase:

- ``tamper_up`` / ``tamper_down``: flip one byte of the client's message to the server / of the server's
  message to the client (the one the client answers in that phase).
- ``replay``: the server first receives the client's message of the previous phase again (in the first
  phase: the same message twice).
- ``reorder``: the server receives this phase's messages in reverse order, and the client first receives
  a stale copy of the server's previous message.
- ``bad_pubkey``: the client advertises a low-order X25519 point (only in ``advertise_keys``).
- ``duplicate_id``: the client sends its message under client ``other``'s id.
- ``inconsistent_survivors``: a malicious server (it signs with its own key) tells the client a survivor
  list without client ``other``, in ``consistency_check`` (active) or ``unmasking`` (passive), and then
  forwards whatever signatures it collected on that list.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from secagg import keys
from secagg import messages as m
from secagg.client import SecAggClient
from secagg.config import RoundConfig
from secagg.errors import ProtocolAbort, SecAggError
from secagg.server import SecAggServer

PHASES = ("advertise_keys", "share_keys", "masked_input", "consistency_check", "unmasking")
FAULT_KINDS = (
    "tamper_up",
    "tamper_down",
    "replay",
    "reorder",
    "bad_pubkey",
    "duplicate_id",
    "inconsistent_survivors",
)


class MeterLike(Protocol):
    """What the driver needs of a meter (``protocols.Meter`` satisfies it)."""

    def send(self, sender: str, receiver: str, phase: str, message: bytes) -> bytes: ...

    def time(self, party: str, phase: str) -> AbstractContextManager[None]: ...


class _NullMeter:
    def send(self, sender: str, receiver: str, phase: str, message: bytes) -> bytes:
        return message

    def time(self, party: str, phase: str) -> AbstractContextManager[None]:
        return contextlib.nullcontext()


@dataclass(frozen=True)
class Fault:
    """One injected fault (see the module docstring for the kinds)."""

    kind: str
    phase: str
    client: int
    other: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise SecAggError(f"Fault.kind: got {self.kind!r}; want one of {FAULT_KINDS}")
        if self.phase not in PHASES:
            raise SecAggError(f"Fault.phase: got {self.phase!r}; want one of {PHASES}")
        if self.kind == "bad_pubkey" and self.phase != "advertise_keys":
            raise SecAggError(f"bad_pubkey: got phase {self.phase!r}; want 'advertise_keys'")
        if self.kind == "tamper_down" and self.phase == "advertise_keys":
            raise SecAggError("tamper_down: got phase 'advertise_keys'; want a phase with a server message")


@dataclass
class RoundOutput:
    """Result of one in-process round.

    Attributes:
        sum: the server's output, ring elements (uint64) = sum of the survivors' inputs mod 2^bits.
        survivors: U3, the clients whose inputs are in ``sum``.
        dropped: the other clients.
        rejected: ``(phase, party, error)`` for every message a party refused.
        server, clients: the party objects, for a caller's follow-up step (e.g. an identifiable abort).
        revealed: for each client v, how many distinct clients sent the server a share of v's self-mask
            seed and of v's mask key (accepted or not) -- for checking that no v has both >= t.
    """

    sum: np.ndarray
    survivors: list[int]
    dropped: list[int]
    rejected: list[tuple[str, str, str]] = field(default_factory=list)
    revealed: dict[int, tuple[int, int]] = field(default_factory=dict)
    server: SecAggServer | None = None
    clients: list[SecAggClient] = field(default_factory=list)


def _flip(msg: bytes, pos: int) -> bytes:
    b = bytearray(msg)
    b[pos % len(b)] ^= 0x01 << (pos % 8)
    return bytes(b)


def _party(i: int) -> str:
    return f"client[{i}]"


def run_round(
    inputs: np.ndarray,
    *,
    t: int,
    bits: int = 32,
    k: int | None = None,
    active: bool = False,
    dropouts: Mapping[int, str] | None = None,
    faults: Sequence[Fault] = (),
    meter: MeterLike | None = None,
    session: bytes | None = None,
    corrupt: int = 0,
    min_survivors: int | None = None,
) -> RoundOutput:
    """Run one secure-aggregation round over bytes between in-process parties.

    Args:
        inputs: ``(n, d)`` unsigned ring elements (e.g. from :class:`secagg.FixedPoint`), < 2^bits.
        t: Shamir threshold (see :class:`secagg.config.RoundConfig`).
        bits: ring Z_{2^bits}.
        k: SecAgg+ degree (even) or ``None`` for the complete graph.
        active: run the consistency check.
        dropouts: ``{client: phase}``; the client sends nothing from ``phase`` on.
        faults: injected faults.
        meter: records bytes and seconds per party and phase.
        session: 16-byte round id (random by default).
        corrupt: colluding clients among any client's share holders that t must withstand.
        min_survivors: the survivor floor (see :class:`secagg.config.RoundConfig`).

    Raises:
        ProtocolAbort: (a subclass) when the server cannot produce a correct sum.
    """
    x = np.asarray(inputs)
    if x.ndim != 2:
        raise SecAggError(f"inputs: got shape {x.shape}; want (n, d)")
    n, d = x.shape
    drops = dict(dropouts or {})
    for c, ph in drops.items():
        if ph not in PHASES or not 0 <= c < n:
            raise SecAggError(
                f"dropouts: got {{{c}: {ph!r}}}; want a client in [0, {n}) and a phase in {PHASES}"
            )
    cfg = RoundConfig(
        n=n,
        t=t,
        d=d,
        bits=bits,
        session=session or secrets.token_bytes(16),
        k=k,
        active=active,
        corrupt=corrupt,
        min_survivors=min_survivors,
    )
    meter = meter or _NullMeter()
    signers = [keys.Signer() for _ in range(n)]
    server_signer = keys.Signer()
    pki = {i: s.verify_key for i, s in enumerate(signers)}
    clients = [SecAggClient(i, x[i], cfg, signers[i], pki, server_signer.verify_key) for i in range(n)]
    server = SecAggServer(cfg, server_signer, pki)
    by_phase: dict[tuple[str, str], list[Fault]] = {}
    for f in faults:
        by_phase.setdefault((f.kind, f.phase), []).append(f)
    out = RoundOutput(np.zeros(0, np.uint64), [], [])
    lying: dict[int, list[int]] = {}  # deceived client -> the survivor list it was given
    lie_sigs: dict[int, bytes] = {}

    def of(kind: str, phase: str) -> Iterator[Fault]:
        yield from by_phase.get((kind, phase), [])

    def server_receive(phase: str, msg: bytes, label: str) -> None:
        meter.send(label, "server", phase, msg)
        with meter.time("server", phase):
            try:
                server.receive(msg)
            except ProtocolAbort as e:
                out.rejected.append((phase, "server", f"{type(e).__name__}: {e}"))

    def forge(to: int, kind: m.Kind, body: bytes) -> bytes:
        return m.pack(m.Envelope(kind, cfg.session, m.SERVER, to, body), server_signer)

    phases = [p for p in PHASES if active or p != "consistency_check"]
    uplink: dict[int, bytes] = {}
    previous_up: dict[int, bytes] = {}
    previous_down: dict[int, bytes] = {}
    downlink: dict[int, bytes] = {}
    for phase in phases:
        # -- clients produce this phase's messages
        uplink = {}
        targets = range(n) if phase == "advertise_keys" else sorted(downlink)
        for c in targets:
            if c in drops and PHASES.index(phase) >= PHASES.index(drops[c]):
                continue
            party = _party(c)
            try:
                with meter.time(party, phase):
                    if phase == "advertise_keys":
                        msg = clients[c].start()
                    else:
                        down = downlink[c]
                        if any(f.client == c for f in of("reorder", phase)) and c in previous_down:
                            stale = meter.send("server", party, phase, previous_down[c])
                            try:
                                clients[c].handle(stale)
                            except ProtocolAbort as e:
                                out.rejected.append((phase, party, f"{type(e).__name__}: {e}"))
                        for f in of("tamper_down", phase):
                            if f.client == c:
                                down = _flip(down, f.other)
                        if c in lying and phase == "unmasking" and active:
                            sigs = [(v, s) for v, s in sorted(lie_sigs.items()) if lying.get(v) == lying[c]]
                            down = forge(c, m.Kind.UNMASK_REQUEST, m.encode_unmask_request(lying[c], sigs))
                        msg = clients[c].handle(meter.send("server", party, phase, down))
            except ProtocolAbort as e:
                out.rejected.append((phase, party, f"{type(e).__name__}: {e}"))
                continue
            uplink[c] = msg
        # -- client-side faults on the way up
        for f in of("bad_pubkey", phase):
            if f.client in uplink:
                stmt_pk = keys.KeyPair.generate().pk
                bad = bytes(32)
                sig = signers[f.client].sign(m.key_statement(cfg.session, f.client, bad, stmt_pk))
                body = m.encode_advertise(bad, stmt_pk, sig)
                env = m.Envelope(m.Kind.ADVERTISE, cfg.session, f.client, m.SERVER, body)
                uplink[f.client] = m.pack(env, signers[f.client])
        for f in of("duplicate_id", phase):
            if f.client in uplink and f.other != f.client:
                env = m.unpack(
                    uplink[f.client], session=cfg.session, receiver=m.SERVER, verify_key_of=pki.get
                )
                fake = m.Envelope(env.kind, env.session, f.other % n, env.receiver, env.body)
                uplink[f.client] = m.pack(fake, signers[f.client])
        if phase == "consistency_check":
            for c in list(uplink):
                if c in lying:
                    lie_sigs[c] = m.unpack(
                        uplink[c], session=cfg.session, receiver=m.SERVER, verify_key_of=pki.get
                    ).body
        if phase == "unmasking":
            _count_revealed(uplink, cfg, pki, out)
        order = sorted(uplink)
        if any(True for _ in of("reorder", phase)):
            order.reverse()
        for c in order:
            for f in of("replay", phase):
                if f.client == c:
                    server_receive(phase, previous_up.get(c, uplink[c]), _party(c))
            msg = uplink[c]
            for f in of("tamper_up", phase):
                if f.client == c:
                    msg = _flip(msg, f.other)
            server_receive(phase, msg, _party(c))
        previous_up = uplink
        # -- the server closes the phase
        with meter.time("server", phase):
            nxt = server.advance()
        previous_down, downlink = downlink, nxt
        nxt_phase = phases[phases.index(phase) + 1] if phase != phases[-1] else None
        for f in of("inconsistent_survivors", nxt_phase or ""):
            c, victim = f.client, f.other % n
            u3 = server.sets.get("U3", [])
            if c in downlink and victim in u3 and victim != c:
                lie = [v for v in u3 if v != victim]
                lying[c] = lie
                kind = m.Kind.SURVIVORS if active else m.Kind.UNMASK_REQUEST
                body = m.encode_ids(lie) if active else m.encode_unmask_request(lie, [])
                downlink[c] = forge(c, kind, body)
    assert server.result is not None
    out.sum = server.result
    out.survivors = server.survivors
    out.dropped = server.dropped
    out.server, out.clients = server, clients
    return out


def _count_revealed(
    uplink: Mapping[int, bytes], cfg: RoundConfig, pki: Mapping[int, bytes], out: RoundOutput
) -> None:
    seeds: dict[int, int] = {}
    mkeys: dict[int, int] = {}
    for msg in uplink.values():
        try:
            env = m.unpack(msg, session=cfg.session, receiver=m.SERVER, verify_key_of=pki.get)
            entries = m.decode_unmask(env.body, cfg.n)
        except ProtocolAbort:
            continue
        for v, what, _ in entries:
            bucket = seeds if what is m.What.SELF_SEED else mkeys
            bucket[v] = bucket.get(v, 0) + 1
    out.revealed = {v: (seeds.get(v, 0), mkeys.get(v, 0)) for v in set(seeds) | set(mkeys)}
