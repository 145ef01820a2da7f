"""The plaintext baseline: the server receives every update in the clear and applies a robust rule."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

import robust
from protocols.base import PROTOCOLS, Leakage, Meter, RoundResult


def upload_bytes(d: int) -> int:
    """Bytes one client sends per round in the clear: ``4 d`` (float32)."""
    return 4 * d


@PROTOCOLS.register("plain")
class PlainAggregation:
    """No confidentiality: clients send float32 updates; the server runs ``rule`` on the stack.

    Leakage: the server learns every client's update (``"updates"``) and the aggregate.

    Bytes per round (:func:`upload_bytes`): each client sends ``4 d`` (its float32 update) and receives
    nothing; the server receives ``4 n d``. This is the baseline of every expansion ratio.

    Args:
        rule: an aggregator name known to ``robust.make`` or an aggregator object; default ``"mean"``.
        **rule_kwargs: passed to ``robust.make`` when ``rule`` is a name.
    """

    name = "plain"

    def __init__(self, rule: Any = "mean", **rule_kwargs: Any) -> None:
        self.rule = robust.make(rule, **rule_kwargs) if isinstance(rule, str) else rule

    def run(
        self,
        stack: torch.Tensor | np.ndarray,
        *,
        weights: torch.Tensor | None = None,
        rng: np.random.Generator | None = None,
    ) -> RoundResult:
        x = torch.as_tensor(stack)
        meter = Meter()
        n = int(x.shape[0])
        for i in range(n):
            # Account the upload as the bytes a float32 update occupies on the wire.
            meter.account(f"client[{i}]", "upload", sent=x.shape[1] * 4)
        meter.account("server", "upload", received=n * x.shape[1] * 4)
        with meter.time("server", "aggregate"):
            out = self.rule(x)
        accepted = getattr(self.rule, "last_selection", None)
        acc = [int(i) for i in accepted] if accepted is not None else list(range(n))
        leak = Leakage({"server": {"updates": "all", "aggregate": "released"}})
        return RoundResult(aggregate=out, accepted=acc, meter=meter, leakage=leak)
