"""Reports of runs and sweeps: tables (pure functions on run summaries) and ``report.md``.

* :func:`group_runs`: mean +- std over seeds of the max top-1 accuracy for every setting (the
  stress-testing paper's metric: maximum accuracy over training, averaged over 3 seeds).
* :func:`table1`: the paper's Table-1 layout — one row per defense, one block of columns per beta,
  one column per attack (and strength); in every (defense, beta) block the most damaging attack, the
  one with the lowest accuracy, is marked ``*``.
* :func:`table1_rows` / :func:`table1_paper`: the paper's own Table-1 layout, used by ``report.md`` —
  rows (beta block, attack at the calibrated and at the worst strength found), columns the
  defenses, the most damaging attack per block and defense in bold.
* :func:`heatmap_cells`: the paper's Figure-1 data — max accuracy over attack strength x beta, one
  panel per defense.
* :func:`write_report`: all of it, plus plots, for a run or sweep directory.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fedsec.config import Config
from fedsec.outputs import atomic_write_text, csv_text, load_runs

SETTING_KEYS = ("dataset", "partition", "beta", "attack", "attack_data", "strength", "f", "protocol", "mode")


def fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        if v != 0 and abs(v) < 10**-digits:  # e.g. delta = 1e-05, which would print as 0.000
            return f"{v:.{digits}g}"
        return f"{v:.{digits}f}"
    return str(v)


def md_lines(head: Sequence[str], body: Iterable[Sequence[str]]) -> list[str]:
    """The lines of a GitHub-markdown table: the header, the separator, one line per row of cells.

    >>> md_lines(["a", "b"], [["1", "2"]])
    ['| a | b |', '|---|---|', '| 1 | 2 |']
    """
    return [
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *("| " + " | ".join(row) + " |" for row in body),
    ]


def md_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A GitHub-markdown table of ``rows`` (floats with 3 decimals)."""
    if not rows:
        return "(no rows)\n"
    cols = list(columns) if columns is not None else list(rows[0])
    return "\n".join(md_lines(cols, ([fmt(r.get(c)) for c in cols] for r in rows))) + "\n"


def attack_name(s: dict[str, Any]) -> str:
    """``alie(z=8)``-style name of a run's attack (``none`` without one)."""
    a = str(s.get("attack", "none"))
    if s.get("attack_data", "none") not in (None, "none"):
        a = s["attack_data"] if a == "none" else f"{a}+{s['attack_data']}"
    if s.get("strength") is not None and a != "none":
        a += f"({s['strength']:g})"
    return a


def group_runs(runs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean +- std over seeds of max/final accuracy per (defense, setting)."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for s in runs:
        groups[(s["label"], *(s.get(k) for k in SETTING_KEYS))].append(s)
    rows = []
    for key, ss in groups.items():
        mx = np.array([s["max_accuracy"] for s in ss], dtype=float)
        fn = np.array([s["final_accuracy"] for s in ss], dtype=float)
        row: dict[str, Any] = {"defense": key[0], **dict(zip(SETTING_KEYS, key[1:]))}
        row.update(
            attack_label=attack_name(ss[0]),
            seeds=len(ss),
            max_acc_mean=float(np.nanmean(mx)),
            max_acc_std=float(np.nanstd(mx)),
            final_acc_mean=float(np.nanmean(fn)),
            agg_seconds=float(np.nanmean([s["agg_seconds_mean"] for s in ss])),
        )
        tpr = [s["byz_detection_tpr"] for s in ss if s.get("byz_detection_tpr") is not None]
        fpr = [s["byz_detection_fpr"] for s in ss if s.get("byz_detection_fpr") is not None]
        row["byz_tpr"] = float(np.mean(tpr)) if tpr else None
        row["byz_fpr"] = float(np.mean(fpr)) if fpr else None
        bd = [s["backdoor_success"] for s in ss if s.get("backdoor_success") is not None]
        row["backdoor"] = float(np.mean(bd)) if bd else None
        eps = [(s.get("privacy") or {}).get("epsilon") for s in ss]
        eps_f = [e for e in eps if e is not None]
        row["epsilon"] = float(np.max(eps_f)) if eps_f else None
        rows.append(row)
    return sorted(rows, key=lambda r: (str(r["defense"]), str(r["attack_label"]), r["beta"] or 0))


#: The stress-testing paper's calibrated strengths (its Tables 1-2): ALIE z = 8, IPM epsilon = 2.5.
PAPER_STRENGTHS: dict[str, float] = {"alie": 8.0, "ipm": 2.5}
#: The symbol of each attack's strength in the paper's tables.
STRENGTH_SYMBOL: dict[str, str] = {"alie": "z", "ipm": "ε"}
_BLOCK_KEYS = ("dataset", "partition", "beta", "attack_data", "f", "protocol", "mode")


def _attack_title(attack: str, strength: float | None) -> str:
    if strength is None or attack == "none":
        return attack
    return f"{attack.upper()} ({STRENGTH_SYMBOL.get(attack, 's')}={strength:g})"


def table1_rows(
    groups: Sequence[dict[str, Any]], calibrated: dict[str, float] | None = None
) -> list[dict[str, Any]]:
    """The paper's Table 1 as data: one row per (block, attack row), one cell per defense.

    A block is a setting apart from the attack (dataset, beta, ... as in ``group_runs``), ordered by
    beta from the mildest (largest) down, as the paper does. In each block, per attack:

    * ``"calibrated"``: the attack at the paper's calibrated strength (``calibrated``, default
      :data:`PAPER_STRENGTHS`) when the grid holds it;
    * ``"worst"``: per defense, the strength of the grid with the lowest mean max accuracy,
      ``s* = argmin_s acc(defense, s)`` (the cell records ``s*``);
    * an attack without a strength (or none) has one ``"fixed"`` row.

    Each row: ``{"block", "block_label", "attack", "kind", "title", "cells": {defense: cell}}`` with
    ``cell = {"mean", "std", "strength", "seeds", "worst": bool}``; ``worst`` marks, per block and
    defense, the row with the lowest accuracy (the most damaging attack; the paper's bold).
    """
    cal = PAPER_STRENGTHS if calibrated is None else calibrated
    blocks: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for g in groups:
        blocks[tuple(g.get(k) for k in _BLOCK_KEYS)].append(g)
    varying = [i for i, k in enumerate(_BLOCK_KEYS) if len({b[i] for b in blocks}) > 1 and k != "beta"]
    rows: list[dict[str, Any]] = []
    for key in sorted(blocks, key=lambda k: (-(k[2] or 0), str(k))):
        gs = blocks[key]
        label = f"{key[0]} (β = {key[2]:g})" if key[2] is not None else str(key[0])
        if varying:
            label += ", " + ", ".join(f"{_BLOCK_KEYS[i]}={key[i]}" for i in varying)
        block_rows = []
        for attack in sorted({str(g["attack"]) for g in gs}, key=lambda a: (a != "none", a)):
            ga = [g for g in gs if str(g["attack"]) == attack]
            with_s = [g for g in ga if g["strength"] is not None and attack != "none"]
            if not with_s:
                block_rows.append(_row(key, label, attack, "fixed", attack, {g["defense"]: g for g in ga}))
                continue
            s_cal = cal.get(attack)
            at_cal = {g["defense"]: g for g in with_s if s_cal is not None and float(g["strength"]) == s_cal}
            if at_cal:
                title = _attack_title(attack, s_cal)
                block_rows.append(_row(key, label, attack, "calibrated", title, at_cal))
            worst: dict[str, dict[str, Any]] = {}
            for g in with_s:
                w = worst.get(g["defense"])
                if w is None or g["max_acc_mean"] < w["max_acc_mean"]:
                    worst[g["defense"]] = g
            sym = STRENGTH_SYMBOL.get(attack, "s")
            block_rows.append(_row(key, label, attack, "worst", f"{attack.upper()} (worst {sym})", worst))
        for d in {d for r in block_rows for d in r["cells"]}:
            cells = [r["cells"][d] for r in block_rows if d in r["cells"]]
            attacked = [c for c, r in zip(cells, block_rows) if r["attack"] != "none"] or cells
            min(attacked, key=lambda c: c["mean"])["worst"] = True
        rows += block_rows
    return rows


def _row(
    key: tuple[Any, ...], label: str, attack: str, kind: str, title: str, by_def: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    cells = {
        d: {
            "mean": g["max_acc_mean"],
            "std": g["max_acc_std"],
            "strength": g["strength"],
            "seeds": g["seeds"],
            "worst": False,
        }
        for d, g in by_def.items()
    }
    return {
        "block": key,
        "block_label": label,
        "attack": attack,
        "kind": kind,
        "title": title,
        "cells": cells,
    }


def table1_paper(
    groups: Sequence[dict[str, Any]],
    calibrated: dict[str, float] | None = None,
    defenses: Sequence[str] | None = None,
) -> str:
    """The paper's Table 1 in markdown: rows (block, attack), columns the defenses.

    Cells are max top-1 accuracy in %, mean ± std over seeds; a ``"worst"`` row adds the strength
    found (``@ z=...``). ``**bold***`` marks, per block and defense, the most damaging attack row.
    ``defenses`` fixes the column order (default: sorted names). See :func:`table1_rows`.
    """
    rows = table1_rows(groups, calibrated)
    if not rows:
        return "(no rows)\n"
    cols = list(defenses) if defenses is not None else sorted({d for r in rows for d in r["cells"]})
    body = []
    last = None
    for r in rows:
        out = []
        for d in cols:
            c = r["cells"].get(d)
            if c is None:
                out.append("-")
                continue
            txt = f"{100 * c['mean']:.1f} ± {100 * c['std']:.1f}"
            if r["kind"] == "worst":
                txt += f" @ {STRENGTH_SYMBOL.get(r['attack'], 's')}={c['strength']:g}"
            out.append(f"**{txt}***" if c["worst"] else txt)
        block = r["block_label"] if r["block"] != last else ""
        last = r["block"]
        body.append([block, r["title"], *out])
    seeds = sorted({c["seeds"] for r in rows for c in r["cells"].values()})
    note = (
        "\nMax top-1 test accuracy (%), mean ± std over "
        + "/".join(str(s) for s in seeds)
        + " seed(s); worst rows: the strength of the grid that hurts each defense most; **bold\\*** ="
        " the most damaging attack per block and defense.\n"
    )
    return "\n".join(md_lines(["setting", "attack", *cols], body)) + "\n" + note


def heatmap_cells(
    groups: Sequence[dict[str, Any]], attack: str
) -> dict[str, tuple[list[float], list[float], np.ndarray]]:
    """Per defense: (strengths, betas, accuracy[beta, strength]) for ``attack`` (NaN where missing)."""
    sel = [g for g in groups if g["attack"] == attack]
    strengths = sorted({float(g["strength"]) for g in sel if g["strength"] is not None})
    betas = sorted({float(g["beta"]) for g in sel})
    out = {}
    for d in sorted({g["defense"] for g in sel}):
        m = np.full((len(betas), len(strengths)), np.nan)
        for g in sel:
            if g["defense"] == d and g["strength"] is not None:
                m[betas.index(float(g["beta"])), strengths.index(float(g["strength"]))] = g["max_acc_mean"]
        out[d] = (strengths, betas, m)
    return out


def runtime_rows(groups: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean aggregation seconds per round per defense (over every setting)."""
    per: dict[str, list[float]] = defaultdict(list)
    for g in groups:
        per[g["defense"]].append(g["agg_seconds"])
    rows = [{"defense": d, "agg_ms_per_round": 1e3 * float(np.nanmean(v))} for d, v in per.items()]
    return sorted(rows, key=lambda r: r["agg_ms_per_round"])


def threat_model_md(tm: dict[str, Any]) -> str:
    body = []
    for k, v in tm.items():
        if isinstance(v, dict):
            v = ", ".join(f"{kk}={fmt(vv, 4)}" for kk, vv in v.items())
        body.append([k if "." in k else k.replace("_", " "), str(v)])  # dotted: a config key
    return "\n".join(md_lines(["item", "value"], body)) + "\n"


def unit_report(cfg: Config, summary: dict[str, Any], metrics: Sequence[dict[str, Any]]) -> str:
    """``report.md`` of one unit run: provenance, threat-model record, results, the metrics."""
    s = summary
    parts = [
        f"# {cfg.name}: {s['label']}\n",
        f"config hash `{s['config_hash']}`, seed {s['seed']}, fedsec {s['version']}, device {s['device']}, "
        f"{s['rounds']} rounds ({s['stopped']}), {s['seconds']:.1f} s\n",
        "## Threat model\n",
        threat_model_md(s["threat_model"]),
        "## Results\n",
        md_table(
            [
                {
                    "max acc": s["max_accuracy"],
                    "final acc": s["final_accuracy"],
                    "agg ms/round": 1e3 * s["agg_seconds_mean"],
                    "client ms/round": 1e3 * s["client_seconds_mean"],
                    "byz TPR": s.get("byz_detection_tpr"),
                    "byz FPR": s.get("byz_detection_fpr"),
                    "backdoor success": s.get("backdoor_success"),
                    "diverged": s["diverged"],
                }
            ]
        ),
    ]
    if s.get("privacy"):
        parts += ["## Differential privacy\n", threat_model_md(s["privacy"])]
    cols = ["round", "accuracy", "loss", "agg_seconds"] + [
        c
        for c in ("byz_detection_tpr", "byz_detection_fpr", "backdoor_success", "dp_epsilon")
        if metrics and c in metrics[-1]
    ]
    parts += ["## Evaluated rounds\n", md_table(list(metrics), cols)]
    from fedsec.overhead import overhead_md

    parts += overhead_md([s])
    return "\n".join(parts)


def write_report(root: Path, *, plots: bool = True) -> Path:
    """Write ``report.md``, ``summary.csv``, ``groups.csv`` and the plots for the runs under ``root``."""
    from fedsec import tradeoff as T
    from fedsec.errors import FedsecError

    root = Path(root)
    runs = load_runs(root)
    if not runs:
        raise FedsecError(
            f"report: got {str(root)!r} with no finished run (no summary.json); want a run or sweep directory"
        )
    groups, swept = T.group_by_setting(runs)  # every swept key kept apart; each row its own epsilon
    trade = T.tradeoff_rows(groups, swept)
    flat = _write_csvs(root, runs, groups, trade)
    figs = _figures(root, runs, groups, swept, trade) if plots else []
    atomic_write_text(root / "report.md", _report_md(root.name, runs, flat, groups, swept, trade, figs))
    return root / "report.md"


def _write_csvs(
    root: Path, runs: list[dict[str, Any]], groups: list[dict[str, Any]], trade: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``summary.csv`` (one flat row per run, returned), ``groups.csv``, ``tradeoff.csv`` if any."""
    flat = [{k: v for k, v in r.items() if not isinstance(v, dict | list)} for r in runs]
    atomic_write_text(root / "summary.csv", csv_text(flat))
    atomic_write_text(root / "groups.csv", csv_text(groups))
    if trade:
        atomic_write_text(root / "tradeoff.csv", csv_text(trade))
    return flat


def _figures(
    root: Path,
    runs: list[dict[str, Any]],
    groups: list[dict[str, Any]],
    swept: Sequence[str],
    trade: list[dict[str, Any]],
) -> list[str]:
    """Draw the report's figures under ``root``; returns their paths in the order ``report.md`` lists them."""
    from fedsec import plots as P
    from fedsec import tradeoff as T
    from fedsec.overhead import accuracy_vs_overhead

    figs = [P.accuracy_curves(runs, root / "accuracy.png")]
    hist = Path(runs[0]["run_dir"]) / "label_histogram.csv"
    if hist.is_file():
        figs.append(P.label_histogram(hist, root / "label_histogram.png"))
    for i, (_, block) in enumerate(T.blocks(groups, swept)):
        for a in sorted({g["attack"] for g in block if g["strength"] is not None}):
            cells = heatmap_cells(block, a)
            if any(len(s) * len(b) > 1 for s, b, _ in cells.values()):
                name = f"heatmap_{a}" + (f"_{i}" if i else "")
                figs.append(P.heatmaps(cells, a, root / f"{name}.png"))
    figs.append(P.runtime_bars(runtime_rows(groups), root / "runtime.png"))
    if trade:
        figs.append(P.tradeoff(trade, root / "tradeoff.png"))
    figs += [f for f in [accuracy_vs_overhead(runs, root / "accuracy_overhead.png")] if f]
    return figs


def _threat_model_section(
    head: dict[str, Any], groups: list[dict[str, Any]], swept: Sequence[str], single: bool
) -> str:
    """The threat-model table: the first run's, with the defenses (``single``: one setting per
    defense) or the swept values (a sweep) in place of the single-run entries."""
    from fedsec import tradeoff as T

    if single:
        tm = dict(head["threat_model"])
        tm["defense"] = ", ".join(sorted({g["defense"] for g in groups}))
        return threat_model_md(tm)
    tm = {**head["threat_model"], "defense": "see tables", **T.swept_summary(groups, swept)}
    return threat_model_md(T.swept_threat_model(tm, swept))


def _results_columns(swept: Sequence[str]) -> list[str]:
    """The columns of the results table: the setting, every swept key but beta, the statistics."""
    return [
        "defense",
        "attack_label",
        "beta",
        *[k for k in swept if k not in ("data.beta",)],
        "seeds",
        "max_acc_mean",
        "max_acc_std",
        "final_acc_mean",
        "final_acc_std",
        "byz_tpr",
        "byz_fpr",
        "backdoor",
        "epsilon",
        "delta",
        "accountant",
        "guarantee",
    ]


def _report_md(
    name: str,
    runs: list[dict[str, Any]],
    flat: list[dict[str, Any]],
    groups: list[dict[str, Any]],
    swept: Sequence[str],
    trade: list[dict[str, Any]],
    figs: list[str],
) -> str:
    """``report.md``: threat model, results, trade-off, Table-1 layouts, runtime, overhead, figures, runs."""
    from fedsec import tradeoff as T
    from fedsec.overhead import overhead_md

    single = len(groups) == len({g["defense"] for g in groups})
    parts = [
        f"# fedsec report: {name}\n",
        f"{len(runs)} run(s), {len(groups)} setting(s); fedsec {runs[0]['version']}\n",
        "## Threat model\n",
        _threat_model_section(runs[0], groups, swept, single),
        "## Results (max top-1 accuracy over training; mean ± std over seeds)\n",
        md_table(groups, _results_columns(swept)),
    ]
    if trade:
        parts += T.tradeoff_md(trade)
    if not single:
        for title, block in T.blocks(groups, swept):
            parts += [f"## Table 1 layout{' (' + title + ')' if title else ''}\n", table1_paper(block)]
    parts += ["## Aggregation runtime\n", md_table(runtime_rows(groups))]
    parts += overhead_md(runs)
    if figs:
        parts += ["## Figures\n"] + [f"![{Path(f).stem}]({Path(f).name})\n" for f in figs]
    parts += [
        "## Runs\n",
        md_table(
            flat, ["label", "config_hash", "seed", "attack", "strength", "beta", "max_accuracy", "run_dir"]
        ),
    ]
    return "\n".join(parts)
