"""Protocol overhead and leakage inside every run: a round observer and the report's section.

:class:`OverheadLog` appends one JSON line per round to ``overhead.jsonl`` in the run directory: the
protocol's meter totals per ``role/phase`` (seconds, bytes sent and received, summed over the role's
parties), the cohort, the accepted and the rejected client ids. :func:`overhead_md` turns the summaries'
``protocol_meter`` and ``leakage_keys`` into the report's "Overhead and leakage" section, one table per
defense, and :func:`accuracy_vs_overhead` plots max accuracy against bytes per round (log axis): the
robustness/confidentiality trade-off at a glance.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fedsec.round import RoundRecord


class OverheadLog:
    """Observer: one ``overhead.jsonl`` line per round (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __call__(self, record: RoundRecord) -> None:
        accepted = set(record.accepted)
        line = {
            "round": record.round,
            "seconds": record.seconds,
            "meter": record.meter,
            "cohort": record.cohort,
            "accepted": record.accepted,
            "rejected": [c for c in record.cohort if c not in accepted],
        }
        with self.path.open("a") as fh:
            fh.write(json.dumps(line, sort_keys=True) + "\n")


def per_round(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows ``role/phase`` of ``summary["protocol_meter"]`` divided by the rounds run."""
    rounds = max(1, int(summary.get("rounds") or 1))
    return [
        {
            "role/phase": key,
            "seconds/round": cost["seconds"] / rounds,
            "bytes sent/round": cost["bytes_sent"] / rounds,
            "bytes received/round": cost["bytes_received"] / rounds,
        }
        for key, cost in (summary.get("protocol_meter") or {}).items()
    ]


def bytes_per_round(summary: dict[str, Any]) -> float:
    """Bytes every party sent in one round, averaged over the rounds run."""
    return sum(r["bytes sent/round"] for r in per_round(summary))


def overhead_md(summaries: Sequence[dict[str, Any]]) -> list[str]:
    """The "Overhead and leakage" section: per defense (first run of each label), the meter per
    role and phase per round and what each party learned (the leakage record's keys)."""
    from fedsec.report import md_table

    parts = ["## Overhead and leakage\n"]
    seen: set[str] = set()
    for s in summaries:
        label = s.get("label", "?")
        if label in seen or not s.get("protocol_meter"):
            continue
        seen.add(label)
        parts += [f"### {label} ({s.get('protocol', '')})\n", md_table(per_round(s))]
        leaks = [
            {"party": party, "learns": ", ".join(keys) or "(nothing)"}
            for party, keys in sorted((s.get("leakage_keys") or {}).items())
        ]
        if leaks:
            parts.append(md_table(leaks))
    return parts if seen else []


def accuracy_vs_overhead(summaries: Sequence[dict[str, Any]], path: Path) -> str | None:
    """Max accuracy against bytes sent per round (all parties, log axis), a point per run."""
    pts = [(bytes_per_round(s), s["max_accuracy"], s["label"]) for s in summaries if s.get("protocol_meter")]
    pts = [p for p in pts if p[0] > 0]
    if not pts:
        return None
    from fedsec.plots import _save, plt

    fig, ax = plt.subplots(figsize=(6, 4))
    cmap = plt.get_cmap("tab10")
    for i, label in enumerate(sorted({p[2] for p in pts})):
        mine = [p for p in pts if p[2] == label]
        ax.scatter([p[0] for p in mine], [p[1] for p in mine], color=cmap(i % 10), label=label)
    ax.set_xscale("log")
    ax.set_xlabel("bytes sent per round, all parties (log)")
    ax.set_ylabel("max test accuracy")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return _save(fig, path)
