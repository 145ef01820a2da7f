"""The wire and channel layer the protocols share: one framed message, one in-process channel.

A :class:`Frame` is ``(round id, sender, receiver, kind, payload)`` and, where the channel signs,
an Ed25519 signature (libsodium, via PyNaCl) over everything before it::

    "FSF1" | round u32 | len(sender) u16 | len(receiver) u16 | len(kind) u16 | len(payload) u32
           | sender | receiver | kind | payload | [signature 64 bytes]

A :class:`Channel` carries the messages of one round between in-process parties. It meters the real
bytes per party and phase (the sender's bytes when it sends, the receiver's when a frame arrives) and
the seconds spent framing and checking, records a transcript of what arrived (for leakage tests), and
applies fault hooks to the frames of a phase while they are on the wire: :func:`drop`, :func:`tamper`,
:func:`replay`, :func:`reorder` (or any ``list[bytes] -> list[bytes]``). The receiving side refuses a
frame that does not parse, carries another round id (a replay from an earlier round), repeats a
``(sender, receiver, kind)`` it already accepted this round, or (signing on) fails its signature; refusals are
listed in :attr:`Delivery.refused` with the reason, so a mechanism treats the sender as dropped.

Mechanisms with a framing of their own (CKKS, Paillier: signed frames of :mod:`protocols.ckks.messages`)
send their bytes through :meth:`Channel.deliver`, which meters, intercepts and records the same way.

Each refusal reason names its typed error (``"FrameError: ..."``, ``"StageError: ..."`` for another
round, another kind or a repeat, ``"AuthenticationError: ..."`` for a bad signature). The core lives in
``secagg`` (the lowest package every mechanism may import: the masking driver uses it) and
:mod:`protocols.channel` re-exports it with the TCP loopback channel.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import nacl.exceptions
import nacl.signing

from fedcore.meter import Meter
from secagg.errors import AuthenticationError, MalformedMessage, StageError

MAGIC = b"FSF1"
_HEAD = struct.Struct(">4sIHHHI")
SIG_BYTES = 64

Fault = Callable[[list[bytes]], list[bytes]]


class FrameError(MalformedMessage):
    """A frame that does not parse, or whose signature, round or sender is wrong."""


@dataclass(frozen=True)
class Message:
    """One transcript entry: who sent which bytes to whom, in which phase (the bytes that arrived)."""

    sender: str
    receiver: str
    phase: str
    payload: bytes


@dataclass(frozen=True)
class Frame:
    """One framed message; :meth:`encode` / :meth:`decode` are inverse (Hypothesis-tested)."""

    round_id: int
    sender: str
    receiver: str
    kind: str
    payload: bytes
    signature: bytes = b""

    def body(self) -> bytes:
        """Header and fields, without the signature: what a signer signs."""
        names = [s.encode() for s in (self.sender, self.receiver, self.kind)]
        head = _HEAD.pack(MAGIC, self.round_id, *(len(b) for b in names), len(self.payload))
        return b"".join([head, *names, self.payload])

    def encode(self) -> bytes:
        return self.body() + self.signature

    @classmethod
    def decode(cls, data: bytes, *, signed: bool = False) -> Frame:
        """Parse ``data``; raise :class:`FrameError` with got/want on any mismatch of length or magic."""
        if len(data) < _HEAD.size:
            raise FrameError(f"got a frame of {len(data)} bytes; want at least the {_HEAD.size}-byte header")
        magic, rnd, ls, lr, lk, lp = _HEAD.unpack_from(data)
        if magic != MAGIC:
            raise FrameError(f"got magic {magic!r}; want {MAGIC!r}")
        end = _HEAD.size + ls + lr + lk + lp
        want = end + (SIG_BYTES if signed else 0)
        if len(data) != want:
            raise FrameError(f"got a frame of {len(data)} bytes; want {want} (header lengths, signature)")
        try:
            o = _HEAD.size
            sender, receiver, kind = (
                data[a : a + n].decode() for a, n in ((o, ls), (o + ls, lr), (o + ls + lr, lk))
            )
        except UnicodeDecodeError as e:
            raise FrameError(f"got a party or kind name that is not UTF-8; want UTF-8 ({e})") from e
        return cls(rnd, sender, receiver, kind, bytes(data[end - lp : end]), bytes(data[end:]))


@dataclass
class Delivery:
    """What arrived in one phase: the accepted frames in arrival order, and the refused wire bytes."""

    frames: list[Frame]
    refused: list[tuple[bytes, str]] = field(default_factory=list)


@dataclass
class Channel:
    """An in-process channel for one protocol round (see the module docstring).

    Args:
        meter: where bytes and seconds go (a fresh :class:`Meter` by default).
        transcript: the list arriving messages are appended to.
        faults: hooks applied in order to each phase's wire frames (:meth:`exchange`).
        intercept: a per-message hook ``Message -> bytes`` (:meth:`deliver`, and each accepted frame's
            payload in :meth:`exchange`), e.g. a test's tamperer.
        sign: sign every frame with its sender's Ed25519 key and verify on arrival.
        round_id: stamped on every frame; frames of another round are refused.
    """

    meter: Meter = field(default_factory=Meter)
    transcript: list[Message] = field(default_factory=list)
    faults: Sequence[Fault] = ()
    intercept: Callable[[Message], bytes] | None = None
    sign: bool = False
    round_id: int = 0
    _keys: dict[str, nacl.signing.SigningKey] = field(default_factory=dict, repr=False)

    def signing_key(self, party: str) -> nacl.signing.SigningKey:
        """The party's Ed25519 key (libsodium), made on first use; its verify key is public."""
        return self._keys.setdefault(party, nacl.signing.SigningKey.generate())

    def deliver(self, sender: str, receiver: str, phase: str, payload: bytes) -> bytes:
        """Send bytes the mechanism framed itself: meter both ends, apply :attr:`intercept`, record."""
        self.meter.send(sender, receiver, phase, payload)
        delivered = bytes(payload)
        arrived, lost = self.carry(phase, [delivered], [sender])
        if not arrived:
            raise MalformedMessage(f"{phase} message from {sender} to {receiver}: {lost[0][1]}")
        delivered = arrived[0]
        if self.intercept is not None:
            delivered = bytes(self.intercept(Message(sender, receiver, phase, delivered)))
        self.transcript.append(Message(sender, receiver, phase, delivered))
        return delivered

    def exchange(self, phase: str, kind: str, messages: Sequence[tuple[str, str, bytes]]) -> Delivery:
        """Frame and send one phase's ``(sender, receiver, payload)`` messages; return what arrived."""
        wire = []
        for sender, receiver, payload in messages:
            with self.meter.time(sender, phase):
                body = Frame(self.round_id, sender, receiver, kind, bytes(payload)).body()
                data = body + (self.signing_key(sender).sign(body).signature if self.sign else b"")
            self.meter.account(sender, phase, sent=len(data))
            wire.append(data)
        for fault in self.faults:
            wire = list(fault(wire))
        wire, lost = self.carry(phase, wire)
        return self._receive(phase, kind, wire, lost)

    def carry(
        self, phase: str, wire: list[bytes], senders: Sequence[str] | None = None
    ) -> tuple[list[bytes], list[tuple[bytes, str]]]:
        """Move one phase's wire bytes to their receivers: what arrived (in arrival order) and what the
        transport refused, with the reason. In process: everything, unchanged. ``senders`` names the
        sending party of each item (``None``: read from the frame headers); the TCP channel
        (:mod:`secagg.tcp_channel`) sends each sender's bytes over its own loopback connection."""
        return wire, []

    def _receive(
        self, phase: str, kind: str, wire: list[bytes], lost: Sequence[tuple[bytes, str]] = ()
    ) -> Delivery:
        out = Delivery([], list(lost))
        seen: set[tuple[str, str, str]] = set()
        for data in wire:
            try:
                frame = Frame.decode(data, signed=self.sign)
            except FrameError as e:
                out.refused.append((data, reason_of(e)))
                continue
            with self.meter.time(frame.receiver, phase):
                why = self._refusal(frame, data, kind, seen)
            self.meter.account(frame.receiver, phase, received=len(data))
            if why is not None:
                out.refused.append((data, why))
                continue
            seen.add((frame.sender, frame.receiver, frame.kind))
            if self.intercept is not None:
                got = self.intercept(Message(frame.sender, frame.receiver, phase, frame.payload))
                frame = dataclasses.replace(frame, payload=bytes(got))
            out.frames.append(frame)
            self.transcript.append(Message(frame.sender, frame.receiver, phase, frame.payload))
        return out

    def _refusal(self, frame: Frame, data: bytes, kind: str, seen: set[tuple[str, str, str]]) -> str | None:
        """Why ``frame`` (parsed from ``data``) is refused, or None. The signature is checked over
        ``data`` less its last 64 bytes, which :meth:`Frame.decode` has matched field by field to
        :meth:`Frame.body` (no second copy of the payload)."""
        if frame.round_id != self.round_id:
            return reason_of(
                StageError(f"got round {frame.round_id}; want round {self.round_id} (a replay?)")
            )
        if frame.kind != kind:
            return reason_of(StageError(f"got kind {frame.kind!r}; want {kind!r}"))
        if (frame.sender, frame.receiver, frame.kind) in seen:
            return reason_of(
                StageError(
                    f"got a second {kind!r} from {frame.sender} to {frame.receiver}; "
                    "want one per round (a replay?)"
                )
            )
        if self.sign:
            if frame.sender not in self._keys:
                return reason_of(
                    AuthenticationError(
                        f"got a frame signed as unknown party {frame.sender!r}; want a known sender"
                    )
                )
            try:
                self._keys[frame.sender].verify_key.verify(data[:-SIG_BYTES], frame.signature)
            except nacl.exceptions.BadSignatureError:
                return reason_of(
                    AuthenticationError(
                        f"got a bad signature from {frame.sender}; want the sender's Ed25519 signature"
                    )
                )
        return None


def reason_of(error: BaseException) -> str:
    """A refusal reason that names its typed error: ``"StageError: got ...; want ..."``."""
    return f"{type(error).__name__}: {error}"


def frame_bytes(sender: str, receiver: str, kind: str, payload: int, *, signed: bool = False) -> int:
    """Bytes of one frame on the wire: the 18-byte header, the three names, the payload [, signature].

    >>> frame_bytes("client[0]", "server", "update", 21)
    60
    """
    names = sum(len(s.encode()) for s in (sender, receiver, kind))
    return _HEAD.size + names + payload + (SIG_BYTES if signed else 0)


def drop(pred: Callable[[Frame], bool]) -> Fault:
    """Fault: frames whose parsed frame satisfies ``pred`` never arrive."""
    return lambda wire: [d for d in wire if not pred(Frame.decode(d, signed=_signed(d)))]


def tamper(pred: Callable[[Frame], bool], at: int = -1) -> Fault:
    """Fault: flip one bit of byte ``at`` in every frame satisfying ``pred`` (default: the last byte)."""

    def hook(wire: list[bytes]) -> list[bytes]:
        out = []
        for d in wire:
            if pred(Frame.decode(d, signed=_signed(d))):
                b = bytearray(d)
                b[at] ^= 1
                d = bytes(b)
            out.append(d)
        return out

    return hook


def replay(old: Sequence[bytes]) -> Fault:
    """Fault: the recorded wire frames ``old`` (from this or an earlier round) arrive again at the end."""
    return lambda wire: [*wire, *old]


def reorder(order: Callable[[int], list[int]] | None = None) -> Fault:
    """Fault: the frames arrive in ``order(len(wire))`` (default: reversed)."""
    return lambda wire: [wire[i] for i in (order(len(wire)) if order else range(len(wire) - 1, -1, -1))]


def sender_of(data: bytes) -> str:
    """The sender named in a frame's header without parsing the rest ("" when it is no frame)."""
    if len(data) < _HEAD.size:
        return ""
    magic, _, ls, _, _, _ = _HEAD.unpack_from(data)
    if magic != MAGIC:
        return ""
    return data[_HEAD.size : _HEAD.size + ls].decode(errors="replace")


def _signed(data: bytes) -> bool:
    """Whether wire bytes carry a signature: their length exceeds what the header announces."""
    if len(data) < _HEAD.size:
        return False
    _, _, ls, lr, lk, lp = _HEAD.unpack_from(data)
    return len(data) == _HEAD.size + ls + lr + lk + lp + SIG_BYTES
