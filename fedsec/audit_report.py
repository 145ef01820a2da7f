"""Outputs of ``fedsec audit``: ``audit.md``, ``audit.csv``, ``audit.json`` and the PNG figures.

Figures (matplotlib, Agg; written through :func:`fedsec.plots._save`): stacked per-phase seconds per
role (``audit_phases.png``), bytes sent per client against a plain float32 upload
(``audit_bytes.png``), and cost against n and against d on log-log axes with the fitted growth
exponent in the legend (``audit_scaling.png``): a quadratic-in-n cost has slope 2.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from fedsec.audit import AuditSpec, Case, Network, growth, summarize
from fedsec.outputs import atomic_write_text, csv_text, dumps
from fedsec.report import md_lines


def tables(cases: list[Case], network: Network) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(rows, summary)``: the per-role/phase rows of every case and one summary row per case."""
    rows, summary = [], []
    for c in cases:
        case_rows = c.rows()
        rows.extend(case_rows)
        if case_rows:
            summary.append(summarize(case_rows, network))
    return rows, summary


def leakage_rows(cases: list[Case]) -> list[dict[str, Any]]:
    """One row per (label, party, key) of the leakage record, from each label's first case."""
    seen: set[str] = set()
    out = []
    for c in cases:
        if c.label in seen:
            continue
        seen.add(c.label)
        for party, values in sorted(c.leakage.items()):
            for key, what in sorted(values.items()):
                out.append({"label": c.label, "party": party, "learns": key, "value": what})
            if not values:
                out.append({"label": c.label, "party": party, "learns": "(nothing)", "value": ""})
    return out


def _fmt_bytes(b: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= size:
            return f"{b / size:.3g} {unit}"
    return f"{b:.0f} B"


def markdown(
    spec: AuditSpec,
    network: Network,
    rows: list[dict[str, Any]],
    summary: list[dict[str, Any]],
    leaks: list[dict[str, Any]],
    refused: list[str],
    figures: list[str],
) -> str:
    """The audit report: summary per case, growth exponents, per-phase rows, leakage, refusals."""
    lines = ["# Protocol overhead audit", "", _preamble(spec, network), "", "## Cost per round", ""]
    lines += _cost_table(summary)
    lines += _growth_table(summary)
    lines += ["", "## Per role and phase", ""]
    lines += _phase_table(rows)
    lines += ["", "## What each party learns (leakage record)", ""]
    lines += md_lines(
        ["defense", "party", "learns", "value"],
        [[r["label"], r["party"], r["learns"], r["value"]] for r in leaks],
    )
    if refused:
        lines += ["", "## Not audited", "", *(f"- {line}" for line in refused)]
    if figures:
        lines += ["", "## Figures", "", *(f"![{Path(f).stem}]({Path(f).name})" for f in figures)]
    return "\n".join(lines) + "\n"


def _preamble(spec: AuditSpec, network: Network) -> str:
    """The paragraph that states the audit's settings and how to read its tables."""
    bw = ", ".join(f"{k}: {v / 1e6:g} Mbit/s" for k, v in sorted(network.bandwidth.items()))
    return (
        f"Rule `{spec.rule}`; clients {spec.clients}; d {spec.dims}; {spec.repeats} repeat(s) (median; "
        f"spread = interquartile range); dropout {spec.dropout:g} (at the phase where it costs the "
        f"most, named in the table); network {bw}, rtt "
        f"{network.rtt_s * 1e3:g} ms. Client figures are per client, others per party role in total. "
        "Expansion = client bytes sent / (4 d), a plain float32 upload. Rows marked * are extrapolated "
        "on the line through two smaller-d pilot runs (not measured; the pilots' log-log slope is in "
        "audit.json). A phase marked (once) runs once per "
        "protocol instance (key setup) and is left out of the per-round totals."
    )


def _cost_table(summary: list[dict[str, Any]]) -> list[str]:
    """One row per case: sizes, dropout, client bytes and expansion, seconds, rounds, wall estimate."""
    head = ["defense", "n", "d", "dropout", "client sent", "client received", "expansion", "client s",
            "server s (all other roles)", "comm rounds", "est. wall s"]  # fmt: skip
    body = [
        [
            s["label"] + (" *" if s["extrapolated"] else ""),
            str(s["n"]),
            str(s["d"]),
            f"{s['dropout']:g}" + (f" at {s['drop_phase']}" if s.get("drop_phase") else ""),
            _fmt_bytes(s["client_bytes_sent"]),
            _fmt_bytes(s["client_bytes_received"]),
            f"{s['expansion']:.3g}x",
            f"{s['client_seconds']:.3g}",
            f"{s['server_seconds']:.3g}",
            str(s["comm_rounds"]),
            f"{s['network_seconds']:.3g}",
        ]
        for s in summary
    ]
    return md_lines(head, body)


def _growth_table(summary: list[dict[str, Any]]) -> list[str]:
    """The growth-exponent section (log-log slopes against n and d); empty with one size only."""
    gn, gd = growth(summary, "n", "server_seconds"), growth(summary, "d", "server_seconds")
    bn = growth(summary, "n", "client_bytes_sent")
    if not any(math.isfinite(v) for v in (*gn.values(), *gd.values())):
        return []
    table = md_lines(
        ["defense", "dropout", "server s vs n", "server s vs d", "client bytes vs n"],
        [[k[0], f"{k[1]:g}", f"{gn[k]:.2f}", f"{gd[k]:.2f}", f"{bn[k]:.2f}"] for k in sorted(gn)],
    )
    return ["", "## Growth exponents (log-log slope)", "", *table]


def _phase_table(rows: list[dict[str, Any]]) -> list[str]:
    """One row per (case, role, phase): seconds with their spread, bytes, communication rounds."""
    return md_lines(
        ["defense", "n", "d", "dropout", "role", "phase", "seconds", "IQR", "sent", "received", "rounds"],
        [
            [
                r["label"] + (" *" if r["extrapolated"] else ""),
                str(r["n"]),
                str(r["d"]),
                f"{r['dropout']:g}",
                r["role"],
                r["phase"] + (" (once)" if r["one_time"] else ""),
                f"{r['seconds']:.3g}",
                f"{r['seconds_iqr']:.2g}",
                _fmt_bytes(r["bytes_sent"]),
                _fmt_bytes(r["bytes_received"]),
                str(r["comm_rounds"]),
            ]
            for r in rows
        ],
    )


def write(
    out: Path, spec: AuditSpec, network: Network, cases: list[Case], refused: list[str], plots: bool = True
) -> dict[str, Any]:
    """Write ``audit.{md,csv,json}`` (and the figures) under ``out``; returns the JSON object."""
    out.mkdir(parents=True, exist_ok=True)
    rows, summary = tables(cases, network)
    leaks = leakage_rows(cases)
    figures = _figures(out, rows, summary) if plots and summary else []
    obj = {
        "spec": {**vars(spec), "rule": str(spec.rule)},
        "network": {"bandwidth_bits_per_s": network.bandwidth, "rtt_s": network.rtt_s},
        "rows": rows,
        "summary": summary,
        "leakage": leaks,
        "refused": refused,
        "exponents": {f"{c.label} n={c.n} d={c.d}": c.exponents for c in cases if c.exponents},
    }
    atomic_write_text(out / "audit.json", dumps(obj))
    atomic_write_text(out / "audit.csv", csv_text(rows))
    atomic_write_text(out / "audit.md", markdown(spec, network, rows, summary, leaks, refused, figures))
    return obj


def _figures(out: Path, rows: list[dict[str, Any]], summary: list[dict[str, Any]]) -> list[str]:
    from fedsec.plots import _save, plt

    n_top, d_top = max(s["n"] for s in summary), max(s["d"] for s in summary)
    top = [s for s in summary if s["n"] == n_top and s["d"] == d_top and not s["dropout"]]
    labels = [s["label"] for s in top]
    figs = []
    # Stacked per-phase seconds, one bar per (defense, role).
    stacks: dict[str, dict[str, float]] = defaultdict(dict)
    for r in rows:
        if r["n"] == n_top and r["d"] == d_top and not r["dropout"]:
            stacks[f"{r['label']} [{r['role']}]"][r["phase"]] = r["seconds"]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(stacks) + 1.5))
    phases = list(dict.fromkeys(p for s in stacks.values() for p in s))
    left = np.zeros(len(stacks))
    cmap = plt.get_cmap("tab20")
    for j, ph in enumerate(phases):
        vals = np.array([s.get(ph, 0.0) for s in stacks.values()])
        ax.barh(list(stacks), vals, left=left, color=cmap(j % 20), label=ph)
        left += vals
    ax.set_xlabel(f"seconds per round (n={n_top}, d={d_top}; client: per client)")
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figs.append(_save(fig, out / "audit_phases.png"))
    # Bytes per client against plain float32.
    fig, ax = plt.subplots(figsize=(6, 0.4 * len(top) + 1.2))
    ax.barh(labels, [s["client_bytes_sent"] for s in top], label="sent")
    ax.axvline(4.0 * d_top, color="k", ls="--", label="plain float32 (4d)")
    ax.set_xscale("log")
    ax.set_xlabel(f"bytes per client per round (d={d_top})")
    ax.legend(fontsize=7)
    figs.append(_save(fig, out / "audit_bytes.png"))
    # Cost against n and d, log-log, exponent in the legend.
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    for ax, by in zip(axes, ("n", "d")):
        slopes = growth(summary, by, "server_seconds")
        other, fixed = ("d", d_top) if by == "n" else ("n", n_top)
        for (label, dropout), alpha in sorted(slopes.items()):
            pts = sorted(
                (s[by], s["server_seconds"])
                for s in summary
                if s["label"] == label and s["dropout"] == dropout and s[other] == fixed
            )
            ax.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                marker="o",
                label=f"{label}{' drop' if dropout else ''} (slope {alpha:.2f})",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"{by} ({other}={fixed})")
        ax.set_ylabel("server seconds (all non-client roles)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6)
    figs.append(_save(fig, out / "audit_scaling.png"))
    return figs
