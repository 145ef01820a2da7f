"""Prio's transport over the round's :class:`protocols.channel.Channel`: every message metered, recorded
in the transcript and passed through the channel's ``intercept`` hook; the leader-helper link
authenticated. Client uploads go through :meth:`Channel.exchange` (one ``report`` frame per client and
server, so the channel's fault hooks apply); the servers' messages through :meth:`Channel.deliver`.

A message between the two servers travels as ``body | tag`` with

    tag = BLAKE2b-256_k(ctx | sender | receiver | phase | seq | body)

(libsodium's keyed BLAKE2b through PyNaCl), ``k`` a 32-byte link key the servers share from setup
(out of band, as the verify key), ``ctx`` the round's random context and ``seq`` the number of
messages sent before on that direction of the link. The receiver recomputes the tag: a rewritten,
truncated, extended, replayed (from this round or another) or reordered server message raises
:class:`secagg.errors.AuthenticationError` instead of entering the verdicts or the aggregate. Without
it, one flipped bit of the helper's aggregate share made the released mean silently wrong.

Client uploads carry no tag: a client shares no key with the servers, and its report is checked by
its proof (a rewritten report fails verification and the client is rejected).
"""

from __future__ import annotations

import hmac
import struct
from collections import Counter
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import nacl.encoding
import nacl.hash

from protocols.base import Meter
from protocols.channel import Channel
from secagg.errors import AuthenticationError

TAG = 32
SERVERS = frozenset({"leader", "helper"})


def link_tag(key: bytes, ctx: bytes, sender: str, receiver: str, phase: str, seq: int, body: bytes) -> bytes:
    """The keyed BLAKE2b-256 tag of one server message (see the module docstring)."""
    head = b"|".join([ctx, sender.encode(), receiver.encode(), phase.encode(), struct.pack("<Q", seq)])
    data = struct.pack("<I", len(head)) + head + body
    return bytes(nacl.hash.blake2b(data, digest_size=TAG, key=key, encoder=nacl.encoding.RawEncoder))


@dataclass
class PrioWire:
    """The round's transport: ``send`` returns what arrives (the link tag checked on server messages)."""

    channel: Channel
    link_key: bytes = b""
    ctx: bytes = b""
    seq: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def meter(self) -> Meter:
        return self.channel.meter

    def time(self, party: str, phase: str) -> AbstractContextManager[None]:
        return self.channel.meter.time(party, phase)

    def send(self, sender: str, receiver: str, phase: str, message: bytes) -> bytes:
        link = {sender, receiver} == SERVERS
        body = bytes(message)
        if link:
            n = self.seq[(sender, receiver)]
            self.seq[(sender, receiver)] += 1
            body += link_tag(self.link_key, self.ctx, sender, receiver, phase, n, body)
        wire = self.channel.deliver(sender, receiver, phase, body)
        if not link:
            return wire
        got, tag = wire[:-TAG], wire[-TAG:]
        want = link_tag(self.link_key, self.ctx, sender, receiver, phase, n, got)
        if len(wire) < TAG or not hmac.compare_digest(tag, want):
            raise AuthenticationError(
                f"{phase} message from {sender} to {receiver} (#{n}): got a tag that does not verify; "
                f"want the message {sender} sent"
            )
        return got
