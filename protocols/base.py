"""Contracts shared by every aggregation protocol: the meter, the leakage record, the round result.

A protocol is assembled from party objects that exchange serialized ``bytes`` only. The driver
(``Protocol.run``) wires them together and records, for every party and phase, wall seconds and bytes
sent and received in a :class:`Meter`. What each party learns beyond its own input is a
:class:`Leakage` record, stated in the protocol's docstring and returned with every round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from typing import Protocol as TypingProtocol

import numpy as np
import torch

from fedcore.meter import Meter, PhaseCost
from robust._registry import Registry

__all__ = ["PROTOCOLS", "AggregationProtocol", "Leakage", "Meter", "PhaseCost", "RoundResult"]


@dataclass(frozen=True)
class Leakage:
    """What each party learns beyond its own input, as data.

    ``learns`` maps a party role (``"server"``, ``"key_holder"``, ``"client"``) to named values, e.g.
    ``{"server": {"aggregate": ..., "dropped": [...]}, "key_holder": {"pairwise_sq_distances": D}}``.
    A protocol that reveals more than it records here is a bug.
    """

    learns: dict[str, dict[str, Any]]

    def keys(self, party: str) -> set[str]:
        return set(self.learns.get(party, {}))


@dataclass(frozen=True)
class RoundResult:
    """Outcome of one aggregation round.

    Attributes:
        aggregate: the ``(d,)`` output the server releases.
        accepted: indices (into the input stack) of the clients whose inputs entered the aggregate.
        meter: per-party, per-phase costs.
        leakage: what each party learned.
    """

    aggregate: torch.Tensor
    accepted: list[int]
    meter: Meter
    leakage: Leakage


class AggregationProtocol(TypingProtocol):
    """What the simulation needs of a protocol: one round over a stack of client updates."""

    name: str

    def run(
        self,
        stack: torch.Tensor | np.ndarray,
        *,
        weights: torch.Tensor | None = None,
        rng: np.random.Generator | None = None,
    ) -> RoundResult: ...


PROTOCOLS: Registry[AggregationProtocol] = Registry("protocol")
