"""In-process driver: n clients and a server exchanging bytes through a :class:`secagg.channel.Channel`.

The driver is a thin orchestrator: it creates the parties (and the PKI of signing keys) and carries each
phase's messages through the channel, which frames them, meters bytes and seconds per party and phase,
records the transcript and applies the channel's fault hooks (:func:`secagg.channel.drop`,
:func:`~secagg.channel.tamper`, :func:`~secagg.channel.replay`, :func:`~secagg.channel.reorder`, or any
``list[bytes] -> list[bytes]``) to the frames on the wire. It holds no protocol logic and forges no
message. A frame the channel refuses (another round, another kind, a repeat, broken framing) and a message
a party rejects (a typed ``ProtocolAbort`` subclass) are recorded in :attr:`RoundOutput.rejected`; the
message is lost, as on a network. An abort of the server ends the round with that exception.

Phases, in order: ``advertise_keys``, ``share_keys``, ``masked_input``, ``consistency_check`` (active
variant only), ``unmasking``. In each phase the server's messages of the previous stage go down first
(frame kind :data:`DOWN`), then the clients' answers go up (kind :data:`UP`); both are metered under
the phase. A dropout ``{client: phase}`` means the client sends nothing from that phase on.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from fedcore.meter import Meter
from secagg import keys
from secagg import messages as m
from secagg.channel import Channel, Delivery, Frame, FrameError, reason_of
from secagg.client import SecAggClient
from secagg.config import RoundConfig
from secagg.errors import ProtocolAbort, SecAggError
from secagg.server import SecAggServer

PHASES = ("advertise_keys", "share_keys", "masked_input", "consistency_check", "unmasking")
#: frame kind of the clients' messages in each phase (the message kind's name)
UP = {
    phase: kind.name.lower()
    for phase, kind in zip(
        PHASES, [m.Kind.ADVERTISE, m.Kind.SHARES, m.Kind.MASKED, m.Kind.CONSISTENCY, m.Kind.UNMASK]
    )
}
#: frame kind of the server's messages that open each phase
DOWN = {
    phase: kind.name.lower()
    for phase, kind in zip(
        PHASES[1:], [m.Kind.KEYS, m.Kind.CIPHERTEXTS, m.Kind.SURVIVORS, m.Kind.UNMASK_REQUEST]
    )
}


@dataclass
class RoundOutput:
    """Result of one in-process round.

    Attributes:
        sum: the server's output, ring elements (uint64) = sum of the survivors' inputs mod 2^bits.
        survivors: U3, the clients whose inputs are in ``sum``.
        dropped: the other clients.
        rejected: ``(phase, party, error)`` for every message a party (or the channel) refused.
        server, clients: the party objects, for a caller's follow-up step (e.g. an identifiable abort).
        revealed: for each client v, how many distinct clients' unmasking messages that reached the server
            held a share of v's self-mask seed and of v's mask key (accepted or not) -- for checking that
            no v has both >= t.
        channel: the round's channel (its meter and transcript).
    """

    sum: np.ndarray
    survivors: list[int]
    dropped: list[int]
    rejected: list[tuple[str, str, str]] = field(default_factory=list)
    revealed: dict[int, tuple[int, int]] = field(default_factory=dict)
    server: SecAggServer | None = None
    clients: list[SecAggClient] = field(default_factory=list)
    channel: Channel | None = None


@dataclass
class _Round:
    """The parties of one round and the channel between them (the driver's state)."""

    cfg: RoundConfig
    server: SecAggServer
    clients: list[SecAggClient]
    names: list[str]
    ch: Channel
    drops: dict[int, str]
    out: RoundOutput
    pki: dict[int, bytes]

    def sends(self, c: int, phase: str) -> bool:
        """Whether client c is still up in ``phase`` (it has not dropped at or before it)."""
        return c not in self.drops or PHASES.index(phase) < PHASES.index(self.drops[c])

    def refused(self, phase: str, got: Delivery, side: str) -> None:
        """Record the channel's refusals under their receiver (``side`` when the frame does not parse)."""
        for data, why in got.refused:
            try:
                party = Frame.decode(data, signed=self.ch.sign).receiver
            except FrameError:
                party = side
            self.out.rejected.append((phase, party, why))

    def down(self, phase: str, downlink: Mapping[int, bytes]) -> dict[int, bytes]:
        """The server's messages reach the clients still up; their answers (``start()`` first)."""
        if phase == "advertise_keys":
            up = {}
            for c in (c for c in range(self.cfg.n) if self.sends(c, phase)):
                with self.ch.meter.time(self.names[c], phase):
                    up[c] = self.clients[c].start()
            return up
        msgs = [("server", self.names[c], downlink[c]) for c in sorted(downlink) if self.sends(c, phase)]
        got = self.ch.exchange(phase, DOWN[phase], msgs)
        self.refused(phase, got, "client")
        index = {name: c for c, name in enumerate(self.names)}
        up = {}
        for fr in got.frames:
            j = index.get(fr.receiver)
            if j is None:
                self.out.rejected.append(
                    (phase, fr.receiver, f"got a frame for {fr.receiver}; want a client")
                )
                continue
            try:
                with self.ch.meter.time(fr.receiver, phase):
                    up[j] = self.clients[j].handle(fr.payload)
            except ProtocolAbort as e:
                self.out.rejected.append((phase, fr.receiver, reason_of(e)))
        return up

    def up(self, phase: str, uplink: Mapping[int, bytes]) -> None:
        """The clients' answers reach the server, which validates each one."""
        got = self.ch.exchange(
            phase, UP[phase], [(self.names[c], "server", uplink[c]) for c in sorted(uplink)]
        )
        self.refused(phase, got, "server")
        if phase == "unmasking":
            self.out.revealed = _count_revealed([fr.payload for fr in got.frames], self.cfg, self.pki)
        for fr in got.frames:
            with self.ch.meter.time("server", phase):
                try:
                    self.server.receive(fr.payload)
                except ProtocolAbort as e:
                    self.out.rejected.append((phase, "server", reason_of(e)))


def run_round(
    inputs: np.ndarray,
    *,
    t: int,
    bits: int = 32,
    k: int | None = None,
    active: bool = False,
    dropouts: Mapping[int, str] | None = None,
    channel: Channel | None = None,
    meter: Meter | None = None,
    names: Sequence[str] | None = None,
    session: bytes | None = None,
    corrupt: int = 0,
    min_survivors: int | None = None,
) -> RoundOutput:
    """Run one secure-aggregation round over a channel between in-process parties.

    Args:
        inputs: ``(n, d)`` unsigned ring elements (e.g. from :class:`secagg.FixedPoint`), < 2^bits.
        t: Shamir threshold (see :class:`secagg.config.RoundConfig`).
        bits: ring Z_{2^bits}.
        k: SecAgg+ degree (even) or ``None`` for the complete graph.
        active: run the consistency check.
        dropouts: ``{client: phase}``; the client sends nothing from ``phase`` on.
        channel: carries, meters and records the messages and applies its fault hooks; a fresh one
            (with ``meter``) by default.
        meter: the meter of the default channel (ignored when ``channel`` is given).
        names: the clients' party names on the channel (default ``client[i]``).
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
    party_names = list(names) if names is not None else [f"client[{i}]" for i in range(n)]
    if len(party_names) != n or len(set(party_names)) != n or "server" in party_names:
        raise SecAggError(f"names: got {party_names!r}; want {n} distinct client names other than 'server'")
    sess = session or secrets.token_bytes(16)
    cfg = RoundConfig(
        n=n,
        t=t,
        d=d,
        bits=bits,
        session=sess,
        k=k,
        active=active,
        corrupt=corrupt,
        min_survivors=min_survivors,
    )
    ch = channel if channel is not None else Channel(meter=meter or Meter(), round_id=_round_id(sess))
    signers = [keys.Signer() for _ in range(n)]
    server_signer = keys.Signer()
    pki = {i: s.verify_key for i, s in enumerate(signers)}
    clients = [SecAggClient(i, x[i], cfg, signers[i], pki, server_signer.verify_key) for i in range(n)]
    server = SecAggServer(cfg, server_signer, pki)
    out = RoundOutput(np.zeros(0, np.uint64), [], [], server=server, clients=clients, channel=ch)
    rnd = _Round(cfg, server, clients, party_names, ch, drops, out, pki)
    downlink: dict[int, bytes] = {}
    for phase in (p for p in PHASES if active or p != "consistency_check"):
        rnd.up(phase, rnd.down(phase, downlink))
        with ch.meter.time("server", phase):
            downlink = server.advance()
    assert server.result is not None
    out.sum, out.survivors, out.dropped = server.result, server.survivors, server.dropped
    return out


def _round_id(session: bytes) -> int:
    """The channel's 32-bit round id: the first four bytes of the 16-byte session."""
    return int.from_bytes(session[:4], "big")


def _count_revealed(
    arrived: Sequence[bytes], cfg: RoundConfig, pki: Mapping[int, bytes]
) -> dict[int, tuple[int, int]]:
    """For each client v: how many distinct unmasking messages hold a share of its seed and of its key."""
    seeds: dict[int, int] = {}
    mkeys: dict[int, int] = {}
    for msg in arrived:
        try:
            env = m.unpack(msg, session=cfg.session, receiver=m.SERVER, verify_key_of=pki.get)
            entries = m.decode_unmask(env.body, cfg.n)
        except ProtocolAbort:
            continue
        for v, what, _ in entries:
            bucket = seeds if what is m.What.SELF_SEED else mkeys
            bucket[v] = bucket.get(v, 0) + 1
    return {v: (seeds.get(v, 0), mkeys.get(v, 0)) for v in set(seeds) | set(mkeys)}
