"""The meter every protocol round fills: wall seconds and bytes sent and received per party and phase.

It lives in the bottom package so that the channel (:mod:`secagg.channel`), the masking driver and every
protocol share one implementation; :mod:`protocols.base` re-exports it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class PhaseCost:
    """Cost of one party in one phase."""

    seconds: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0


@dataclass
class Meter:
    """Per-party, per-phase overhead: wall seconds, bytes sent, bytes received.

    Keys are ``(party, phase)``; a party is a role name plus an index where there are many
    (``"client[3]"``, ``"server"``, ``"key_holder"``).
    """

    costs: dict[tuple[str, str], PhaseCost] = field(default_factory=dict)

    def _cost(self, party: str, phase: str) -> PhaseCost:
        return self.costs.setdefault((party, phase), PhaseCost())

    @contextmanager
    def time(self, party: str, phase: str) -> Iterator[None]:
        """Add the wall time of the ``with`` body to ``(party, phase)``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._cost(party, phase).seconds += time.perf_counter() - t0

    def account(self, party: str, phase: str, *, sent: int = 0, received: int = 0) -> None:
        """Add byte counts to ``(party, phase)`` without a message object (e.g. a modelled upload)."""
        cost = self._cost(party, phase)
        cost.bytes_sent += sent
        cost.bytes_received += received

    def send(self, sender: str, receiver: str, phase: str, message: bytes) -> bytes:
        """Account one message from ``sender`` to ``receiver`` and return it unchanged."""
        if not isinstance(message, bytes | bytearray | memoryview):
            raise TypeError(f"parties exchange bytes only; got {type(message).__name__}")
        size = len(message)
        self._cost(sender, phase).bytes_sent += size
        self._cost(receiver, phase).bytes_received += size
        return bytes(message)

    def parties(self) -> list[str]:
        return sorted({p for p, _ in self.costs})

    def phases(self) -> list[str]:
        seen: dict[str, None] = {}
        for _, ph in self.costs:
            seen.setdefault(ph, None)
        return list(seen)

    def total(self, party: str | None = None, phase: str | None = None) -> PhaseCost:
        """Sum over the entries matching ``party`` (a role prefix such as ``"client"`` also matches
        ``"client[3]"``) and ``phase``; ``None`` matches all."""
        out = PhaseCost()
        for (p, ph), c in self.costs.items():
            if party is not None and p != party and not p.startswith(party + "["):
                continue
            if phase is not None and ph != phase:
                continue
            out.seconds += c.seconds
            out.bytes_sent += c.bytes_sent
            out.bytes_received += c.bytes_received
        return out

    def rows(self) -> list[dict[str, Any]]:
        """Flat records, one per (party, phase), for tables and JSON."""
        return [
            {
                "party": p,
                "phase": ph,
                "seconds": c.seconds,
                "bytes_sent": c.bytes_sent,
                "bytes_received": c.bytes_received,
            }
            for (p, ph), c in self.costs.items()
        ]
