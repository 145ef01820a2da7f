"""The simulation's per-round consumers, as observers of the round record (:mod:`fedsec.round`).

Each is called as ``observer(record)`` once per completed round, after the server step, with
``record.weights`` the new global model. :class:`Metrics` evaluates and writes the metrics rows,
:class:`Checkpoints` saves the weights every ``output.checkpoint_every`` rounds, and
:class:`PrivacyBudget` says before each round whether the next one would exceed the DP budget. The
round loop (:func:`fedsec.simulation.simulate`) only draws, aggregates, steps and notifies.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from fedsec.outputs import RunWriter
from fedsec.privacy import PrivacyWiring
from fedsec.round import RoundRecord
from fedsec.training import FlatModel, evaluate, predict


@dataclass
class Evaluator:
    """Test accuracy and loss of weights ``w``, and the backdoor success rate when ``bd_x`` is set."""

    fm: FlatModel
    x_test: torch.Tensor
    y_test: torch.Tensor
    batch_size: int
    bd_x: torch.Tensor | None = None
    bd_target: int = 0

    def __call__(self, w: torch.Tensor) -> tuple[float, float]:
        return evaluate(self.fm, w, self.x_test, self.y_test, self.batch_size)

    def backdoor(self, w: torch.Tensor) -> float:
        assert self.bd_x is not None
        hits = predict(self.fm, w, self.bd_x, self.batch_size) == self.bd_target
        return float(hits.float().mean())


@dataclass
class Metrics:
    """Observer: one metrics row every ``every`` rounds and at ``last``, appended to the run's writer.

    A row holds the round, accuracy and loss, the mean aggregation seconds since the last row, the
    elapsed seconds, the backdoor success rate, the detection rates averaged over all rounds so far,
    and the privacy wiring's metrics. It also keeps the run's aggregation times and detection rates
    for the summary.
    """

    evaluate: Evaluator
    base: dict[str, Any]
    every: int
    last: int
    privacy: PrivacyWiring
    writer: RunWriter | None
    t_start: float
    rows: list[dict[str, Any]] = field(default_factory=list)
    agg_times: list[float] = field(default_factory=list)
    tpr: list[float] = field(default_factory=list)
    fpr: list[float] = field(default_factory=list)
    window: list[float] = field(default_factory=list)

    def __call__(self, record: RoundRecord) -> None:
        self.agg_times.append(record.seconds)
        self.window.append(record.seconds)
        if record.tpr is not None:
            self.tpr.append(record.tpr)
        if record.fpr is not None:
            self.fpr.append(record.fpr)
        t = record.round
        if t % self.every != 0 and t != self.last:
            return
        assert record.weights is not None
        acc, loss = self.evaluate(record.weights)
        rec: dict[str, Any] = {**self.base, "round": t, "accuracy": acc, "loss": loss}
        rec["agg_seconds"] = float(np.mean(self.window))
        rec["elapsed"] = time.perf_counter() - self.t_start
        self.window = []
        if self.evaluate.bd_x is not None:
            rec["backdoor_success"] = self.evaluate.backdoor(record.weights)
        rec.update(self.detection())
        self._append({**rec, **self.privacy.metrics()})

    def detection(self) -> dict[str, float | None]:
        """The mean detection rates so far (empty when no round measured them)."""
        if not (self.tpr or self.fpr):
            return {}
        return {
            "byz_detection_tpr": float(np.mean(self.tpr)) if self.tpr else None,
            "byz_detection_fpr": float(np.mean(self.fpr)) if self.fpr else None,
        }

    def finish(self, w: torch.Tensor, rounds_done: int) -> None:
        """The closing row for a run that stopped (budget, divergence) after its last evaluation."""
        if rounds_done and (not self.rows or self.rows[-1]["round"] != rounds_done):
            acc, loss = self.evaluate(w)
            self._append(
                {**self.base, "round": rounds_done, "accuracy": acc, "loss": loss, **self.privacy.metrics()}
            )

    def _append(self, rec: dict[str, Any]) -> None:
        self.rows.append(rec)
        if self.writer is not None:
            self.writer.append_metrics(rec)


@dataclass
class Checkpoints:
    """Observer: ``checkpoints/round_<t>.pt`` (round, weights, config hash) every ``every`` rounds."""

    writer: RunWriter
    every: int
    config_hash: str

    def __call__(self, record: RoundRecord) -> None:
        if self.every > 0 and record.round % self.every == 0:
            assert record.weights is not None
            self.save(record.round, record.weights, f"checkpoints/round_{record.round:05d}.pt")

    def save(self, round_no: int, w: torch.Tensor, name: str) -> None:
        torch.save(
            {"round": round_no, "weights": w.cpu(), "config_hash": self.config_hash}, self.writer.path(name)
        )


class PrivacyBudget:
    """Observer: ``stop`` is the reason to stop before the next round (``None``: go on).

    Set at construction (a budget spent before the first round) and after every round, from the privacy
    wiring's accountant (:meth:`fedsec.privacy.PrivacyWiring.would_exceed_budget`).
    """

    def __init__(self, privacy: PrivacyWiring) -> None:
        self.privacy = privacy
        self.stop: str | None = None
        self._check()

    def _check(self) -> None:
        self.stop = self.privacy.budget_stop_reason() if self.privacy.would_exceed_budget() else None

    def __call__(self, record: RoundRecord) -> None:
        self._check()
