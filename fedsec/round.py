"""One aggregation round of the simulation as a record, and the observers that receive it.

:func:`aggregate` runs the protocol on the round's stack and returns a :class:`RoundRecord`: the
aggregate, the accepted clients (by id), the detection rates of a selecting rule, the wall time, the
protocol's meter totals per role and phase, and the leakage keys each party learned. Observers
(``observer(record)``) see every record; :class:`MeterTotals` is the one the simulation keeps to put
what the protocol measured into the run's summary (it was dropped before).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from protocols import Meter, RoundResult

_INDEX = re.compile(r"\[\d+\]$")


def role(party: str) -> str:
    """``"client[3]"`` -> ``"client"``; ``"server"`` unchanged."""
    return _INDEX.sub("", party)


def meter_by_role(meter: Meter) -> dict[str, dict[str, float]]:
    """Totals per ``"role/phase"``: seconds, bytes sent and received, summed over the role's parties."""
    out: dict[str, dict[str, float]] = {}
    for (party, phase), c in meter.costs.items():
        t = out.setdefault(f"{role(party)}/{phase}", {"seconds": 0.0, "bytes_sent": 0, "bytes_received": 0})
        t["seconds"] += c.seconds
        t["bytes_sent"] += c.bytes_sent
        t["bytes_received"] += c.bytes_received
    return out


@dataclass
class RoundRecord:
    """What one round of aggregation produced and cost.

    Attributes:
        round: the round number (from 1).
        aggregate: the ``(d,)`` aggregate, on the model's device.
        accepted: ids of the clients whose updates entered the aggregate.
        tpr: fraction of the cohort's Byzantine rows left out (``None``: no Byzantine row, or the rule
            neither selects nor excludes).
        fpr: fraction of the cohort's honest rows left out (``None`` as for ``tpr``).
        seconds: wall time of the protocol's round.
        meter: :func:`meter_by_role` of the protocol's meter.
        leakage: the keys each party's leakage record holds.
        weights: the global model after the server's step (set by the round loop before observers run).
        cohort: ids of the round's clients (those not in ``accepted`` were dropped or rejected).
    """

    round: int
    aggregate: torch.Tensor = field(repr=False)
    accepted: list[int]
    tpr: float | None
    fpr: float | None
    seconds: float
    meter: dict[str, dict[str, float]]
    leakage: dict[str, list[str]]
    weights: torch.Tensor | None = field(default=None, repr=False)
    cohort: list[int] = field(default_factory=list)


Observer = Callable[[RoundRecord], None]


def aggregate(
    proto: Any,
    stack: torch.Tensor,
    *,
    round_no: int,
    cohort: np.ndarray,
    is_byz: np.ndarray,
    selector: Any,
    rng: np.random.Generator,
    device: torch.device | str,
    dtype: torch.dtype,
    extras: Mapping[str, Any] | None = None,
) -> RoundRecord:
    """Run ``proto`` on the cohort's stack and record the round.

    Detection is measured when the rule (``selector``) reports a selection after the round, and
    whenever the protocol accepted fewer rows than the cohort (dropouts, rejected proofs). ``extras``
    are the rule's per-round keywords (:func:`fedsec.build.rule_extras`), passed to the protocol's run.
    """
    t0 = time.perf_counter()
    if extras:
        result: RoundResult = proto.run(stack, rng=rng, extras=extras)
    else:
        result = proto.run(stack, rng=rng)
    seconds = time.perf_counter() - t0
    agg = torch.as_tensor(result.aggregate, device=device).to(dtype).reshape(-1)
    rows = {int(i) for i in result.accepted}
    tpr = fpr = None
    if getattr(selector, "last_selection", None) is not None or len(rows) < len(cohort):
        byz_rows = np.flatnonzero(is_byz[cohort])
        honest_rows = np.flatnonzero(~is_byz[cohort])
        if len(byz_rows):
            tpr = float(np.mean([r not in rows for r in byz_rows]))
        fpr = float(np.mean([r not in rows for r in honest_rows])) if len(honest_rows) else 0.0
    return RoundRecord(
        round=round_no,
        aggregate=agg,
        accepted=sorted(int(cohort[r]) for r in rows),
        tpr=tpr,
        fpr=fpr,
        seconds=seconds,
        meter=meter_by_role(result.meter),
        leakage={party: sorted(values) for party, values in result.leakage.learns.items()},
        cohort=[int(c) for c in cohort],
    )


class MeterTotals:
    """Observer: the meter summed over rounds per role and phase, and the union of leakage keys."""

    def __init__(self) -> None:
        self.meter: dict[str, dict[str, float]] = {}
        self.leakage: dict[str, set[str]] = {}
        self.rounds = 0

    def __call__(self, record: RoundRecord) -> None:
        self.rounds += 1
        for key, cost in record.meter.items():
            acc = self.meter.setdefault(key, {"seconds": 0.0, "bytes_sent": 0, "bytes_received": 0})
            for k, v in cost.items():
                acc[k] += v
        for party, keys in record.leakage.items():
            self.leakage.setdefault(party, set()).update(keys)

    def summary(self) -> dict[str, Any]:
        """``{"protocol_meter": {role/phase: totals}, "leakage_keys": {party: [keys]}}``."""
        return {
            "protocol_meter": self.meter,
            "leakage_keys": {party: sorted(keys) for party, keys in self.leakage.items()},
        }
