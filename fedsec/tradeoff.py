"""Sweep grouping that keeps every swept key apart, and the accuracy-vs-epsilon trade-off.

A sweep varies some config keys (``[sweep]``: e.g. ``dp.noise_multiplier``, ``attack.f``, ``train.seed``).
A *setting* is one value of every varied key except the seed; a group's "seeds" are the runs of one
setting and nothing else, so runs at different noise multipliers are never averaged together.
:func:`swept_keys` finds the varied keys from the runs' own resolved ``config.toml`` (so a sweep, a
stress grid or any set of runs under one directory is grouped alike) and :func:`group_by_setting`
reuses :func:`fedsec.report.group_runs` inside each setting.

Every group carries its own privacy statement: epsilon (the largest over its seeds), delta, the
accountant, the noise multiplier and the guarantee -- ``proven`` or ``heuristic`` (a robust rule under
DP-FedAvg, or a fixed-size cohort accounted as Poisson; see :class:`dp.DPFedAvg`). A group is
``heuristic`` as soon as one of its runs is.

:func:`tradeoff_rows` maps the groups to the trade-off figure's points: one panel per (attack, beta),
one line per defense (and any other swept key), accuracy (max and final over training, mean and
std over seeds) against epsilon, with the Pareto points of each panel marked: a point is Pareto when
no other point of the panel has an epsilon at most its own and a higher max accuracy (or an equal
accuracy at a smaller epsilon).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tomllib

from fedsec.report import SETTING_KEYS, group_runs

#: Config keys that never define a setting: the seed (what a group averages over), the defense (its own
#: grouping key, the label), where outputs go, and the grid/stress tables themselves.
IGNORED = ("train.seed", "name", "defense", "output.", "sweep.", "stress.")
#: Swept keys that place a point in the figure rather than naming a line.
PLACEMENT = ("dp.noise_multiplier", "data.beta", "attack.")


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, list):
            out[key] = repr(v)  # hashable, and equal lists compare equal
        else:
            out[key] = v
    return out


def run_settings(run: dict[str, Any]) -> dict[str, Any]:
    """The run's resolved config as dotted keys (``{}`` when its ``config.toml`` is missing)."""
    path = Path(str(run.get("run_dir", ""))) / "config.toml"
    if not path.is_file():
        return {}
    return _flatten(tomllib.loads(path.read_text()))


def _ignored(key: str) -> bool:
    return any(key == p or key.startswith(p if p.endswith(".") else p + ".") for p in IGNORED)


def swept_keys(runs: Sequence[dict[str, Any]], settings: Sequence[dict[str, Any]] | None = None) -> list[str]:
    """Dotted config keys whose value differs between ``runs`` (seed, defense and output excluded)."""
    cfgs = list(settings) if settings is not None else [run_settings(r) for r in runs]
    keys = sorted({k for c in cfgs for k in c})
    return [k for k in keys if not _ignored(k) and len({repr(c.get(k)) for c in cfgs}) > 1]


def _guarantee(stmts: Sequence[dict[str, Any]]) -> str | None:
    labels = [str(s.get("guarantee", "proven")) for s in stmts]
    if not labels:
        return None
    if any(not g.startswith("proven") for g in labels):
        return "heuristic"
    return "proven"


def privacy_columns(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Epsilon (largest over the runs), delta, accountant, noise multiplier and guarantee of a group."""
    stmts = [s["privacy"] for s in runs if isinstance(s.get("privacy"), dict)]
    eps = [float(s["epsilon"]) for s in stmts if s.get("epsilon") is not None]
    first = stmts[0] if stmts else {}
    return {
        "epsilon": max(eps) if eps else None,
        "delta": first.get("delta"),
        "accountant": first.get("accountant"),
        "noise_multiplier": first.get("noise_multiplier"),
        "guarantee": _guarantee(stmts),
    }


def group_by_setting(runs: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Groups (mean +- std over seeds) keyed by defense and *every* swept key; returns (groups, keys).

    Each group row is :func:`fedsec.report.group_runs`'s row for the runs of one setting, plus a
    column per swept key, ``final_acc_std``, the seeds it holds, and :func:`privacy_columns`.
    """
    cfgs = [run_settings(r) for r in runs]
    keys = swept_keys(runs, cfgs)
    parts: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for r, c in zip(runs, cfgs):
        parts[tuple(repr(c.get(k)) for k in keys)].append(r)
    rows: list[dict[str, Any]] = []
    for members in parts.values():
        values = run_settings(members[0])
        for row in group_runs(members):
            mine = [r for r in members if r["label"] == row["defense"] and _same(r, row)]
            fn = np.array([r["final_accuracy"] for r in mine], dtype=float)
            row.update({k: values.get(k) for k in keys})
            row["final_acc_std"] = float(np.nanstd(fn)) if len(fn) else math.nan
            row["seed_list"] = " ".join(str(r.get("seed")) for r in sorted(mine, key=lambda r: r["seed"]))
            row.update(privacy_columns(mine))
            rows.append(row)
    rows.sort(key=lambda r: (str(r["defense"]), str(r["attack_label"]), *(repr(r.get(k)) for k in keys)))
    return rows, keys


def _same(run: dict[str, Any], row: dict[str, Any]) -> bool:
    return all(run.get(k) == row.get(k) for k in SETTING_KEYS)


def _pareto(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For (epsilon, accuracy) points: True where no other point is at least as private and as accurate,
    and strictly better in one of the two."""
    out = []
    for i, (e, a) in enumerate(points):
        dominated = any(
            j != i and e2 <= e and a2 >= a and (e2 < e or a2 > a) for j, (e2, a2) in enumerate(points)
        )
        out.append(not dominated)
    return out


def tradeoff_rows(groups: Sequence[dict[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """The trade-off figure's points (groups with a finite epsilon), Pareto-marked per panel."""
    line_keys = [k for k in keys if not any(k == p or k.startswith(p) for p in PLACEMENT)]
    rows = []
    for g in groups:
        eps = g.get("epsilon")
        if eps is None or not math.isfinite(float(eps)):
            continue
        extra = ", ".join(f"{k}={g.get(k)}" for k in line_keys)
        rows.append(
            {
                "panel": f"{g['attack_label']}, beta={g['beta']}",
                "line": g["defense"] + (f" ({extra})" if extra else ""),
                "defense": g["defense"],
                "attack_label": g["attack_label"],
                "beta": g["beta"],
                "noise_multiplier": g.get("noise_multiplier"),
                "epsilon": float(eps),
                "delta": g.get("delta"),
                "guarantee": g.get("guarantee"),
                "seeds": g["seeds"],
                "max_acc_mean": g["max_acc_mean"],
                "max_acc_std": g["max_acc_std"],
                "final_acc_mean": g["final_acc_mean"],
                "final_acc_std": g.get("final_acc_std"),
            }
        )
    by_panel: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_panel[r["panel"]].append(r)
    for members in by_panel.values():
        marks = _pareto([(r["epsilon"], r["max_acc_mean"]) for r in members])
        for r, m in zip(members, marks):
            r["pareto"] = m
    return sorted(rows, key=lambda r: (r["panel"], r["line"], r["epsilon"]))


def swept_summary(groups: Sequence[dict[str, Any]], keys: Sequence[str]) -> dict[str, str]:
    """``{"swept <key>": "v1, v2, ..."}`` for the threat-model table."""
    return {f"swept {k}": ", ".join(sorted({str(g.get(k)) for g in groups})) for k in keys}


__all__ = [
    "blocks",
    "group_by_setting",
    "privacy_columns",
    "run_settings",
    "swept_keys",
    "swept_summary",
    "tradeoff_rows",
]


def blocks(groups: Sequence[dict[str, Any]], keys: Sequence[str]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Split groups by the swept keys a Table-1 layout has no axis for (its axes: defense, beta, attack),
    so that one table cell never mixes, e.g., two noise multipliers. ``[("", groups)]`` when none."""
    extra = [k for k in keys if not any(k == p or k.startswith(p) for p in ("data.beta", "attack."))]
    if not extra:
        return [("", list(groups))]
    parts: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for g in groups:
        parts[", ".join(f"{k}={g.get(k)}" for k in extra)].append(g)
    return sorted(parts.items())


def swept_threat_model(tm: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """The first run's threat-model record with every swept value shown as swept, not as one value."""
    out = dict(tm)
    sections = {k.split(".", 1)[0] for k in keys}
    if "dp" in sections:
        out["dp"] = "swept: each row of the results table carries its own epsilon, delta and guarantee"
    if "attack.f" in keys:
        out["byzantine_actual"] = "swept (see the tables)"
    if any(k.startswith("attack.") and k != "attack.f" for k in keys):
        out["attack"] = "swept (see the tables)"
    if "data" in sections and "data_split" in out:
        out["data_split"] = "swept (see the tables)"
    return out


def tradeoff_md(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The report section of the trade-off: the table behind ``tradeoff.png`` / ``tradeoff.csv``."""
    from fedsec.report import md_table

    cols = ["panel", "line", "noise_multiplier", "epsilon", "guarantee", "seeds", "max_acc_mean",
            "max_acc_std", "final_acc_mean", "final_acc_std", "pareto"]  # fmt: skip
    note = (
        "Accuracy against epsilon (delta as in the results table), one row per (defense, setting). "
        "`heuristic`: the epsilon is the mean's, not a proven bound for this rule or sampling.\n"
    )
    return ["## Privacy-accuracy trade-off\n", note, md_table(list(rows), cols)]
