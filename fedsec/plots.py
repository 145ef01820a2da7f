"""PNG figures (matplotlib, Agg backend); each written to a temporary name, then renamed."""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from fedsec.report import attack_name


def _save(fig: Any, path: Path) -> str:
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return str(path)


def _panel_grid(n: int, panel: tuple[float, float], sharey: bool = False) -> tuple[Any, Any]:
    """A figure for ``n`` panels, at most 3 a row, each ``panel = (width, height)`` inches; returns
    ``(fig, axes)`` with ``axes`` 2-D and the axes past the n-th turned off."""
    cols = min(3, max(1, n))
    rows = max(1, (n + cols - 1) // cols)
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(panel[0] * cols, panel[1] * rows),
        squeeze=False,
        sharey=sharey,
        layout="constrained",
    )
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes


def accuracy_curves(runs: Sequence[dict[str, Any]], path: Path, max_panels: int = 12) -> str:
    """Test accuracy vs round: a panel per setting (attack, beta), a line per defense (mean over seeds)."""
    panels: dict[str, dict[str, list[list[tuple[int, float]]]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        key = f"{attack_name(r)}, beta={r['beta']:g}"
        panels[key][r["label"]].append(
            [(m["round"], m["accuracy"]) for m in r["metrics"] if m["accuracy"] is not None]
        )
    keys = sorted(panels)[:max_panels]
    fig, axes = _panel_grid(len(keys), (4.2, 3.2), sharey=True)
    for ax, key in zip(axes.flat, keys):
        for label, curves in sorted(panels[key].items()):
            rounds = [t for t, _ in curves[0]]
            n = min(len(c) for c in curves)
            acc = np.mean([[a for _, a in c[:n]] for c in curves], axis=0)
            ax.plot(rounds[:n], acc, label=label)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("test accuracy")
    axes[0, 0].legend(fontsize=7)
    return _save(fig, path)


def heatmaps(cells: dict[str, tuple[list[float], list[float], np.ndarray]], attack: str, path: Path) -> str:
    """Figure-1 style: max accuracy over (beta x attack strength), one panel per defense."""
    names = sorted(cells)
    fig, axes = _panel_grid(len(names), (3.8, 3.0))
    im = None
    for ax, d in zip(axes.flat, names):
        strengths, betas, m = cells[d]
        im = ax.imshow(m, vmin=0.0, vmax=1.0, cmap="viridis", origin="lower", aspect="auto")
        ax.set_xticks(range(len(strengths)), [f"{s:g}" for s in strengths], fontsize=8)
        ax.set_yticks(range(len(betas)), [f"{b:g}" for b in betas], fontsize=8)
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                if np.isfinite(m[i, j]):
                    ax.text(j, i, f"{100 * m[i, j]:.0f}", ha="center", va="center", fontsize=7, color="w")
        ax.set_title(d, fontsize=9)
        ax.set_xlabel(f"{attack} strength")
        ax.set_ylabel("beta")
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=0.8, label="max test accuracy")
    return _save(fig, path)


def runtime_bars(rows: Sequence[dict[str, Any]], path: Path) -> str:
    """Mean aggregation milliseconds per round per defense."""
    fig, ax = plt.subplots(figsize=(6, 0.4 * len(rows) + 1.2))
    ax.barh([r["defense"] for r in rows], [r["agg_ms_per_round"] for r in rows])
    ax.set_xlabel("aggregation ms / round")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def label_histogram(csv_path: Path, path: Path) -> str:
    """Stacked per-client label counts (Byzantine clients hatched)."""
    with open(csv_path) as fh:
        rows = list(csv.DictReader(fh))
    classes = [k for k in rows[0] if k.startswith("class_")]
    counts = np.array([[int(r[c]) for c in classes] for r in rows])
    byz = [r["byzantine"] == "True" for r in rows]
    fig, ax = plt.subplots(figsize=(max(6, 0.3 * len(rows)), 3.2))
    bottom = np.zeros(len(rows))
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for j, c in enumerate(classes):
        bars = ax.bar(
            range(len(rows)), counts[:, j], bottom=bottom, color=cmap(j % cmap.N), label=c.split("_")[1]
        )
        for b, is_b in zip(bars, byz):
            if is_b:
                b.set_hatch("//")
        bottom += counts[:, j]
    ax.set_xlabel("client (hatched: Byzantine)")
    ax.set_ylabel("samples")
    ax.legend(fontsize=6, title="class", title_fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, path)


def tradeoff(rows: Sequence[dict[str, Any]], path: Path) -> str:
    """Accuracy against epsilon (log axis): a panel per (attack, beta), a colour per line (defense);
    solid = max accuracy over training, dotted = final accuracy, bars = std over seeds; a black ring
    marks the panel's Pareto points, a hollow marker a heuristic (not proven) epsilon."""
    panels: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        panels[r["panel"]][r["line"]].append(r)
    keys = sorted(panels)
    lines = sorted({r["line"] for r in rows})
    colour = {name: plt.get_cmap("tab10")(i % 10) for i, name in enumerate(lines)}
    fig, axes = _panel_grid(len(keys), (4.4, 3.4), sharey=True)
    for ax, key in zip(axes.flat, keys):
        for name, pts in sorted(panels[key].items()):
            pts = sorted(pts, key=lambda r: r["epsilon"])
            eps = [r["epsilon"] for r in pts]
            c = colour[name]
            ax.errorbar(eps, [r["max_acc_mean"] for r in pts], yerr=[r["max_acc_std"] for r in pts],
                        color=c, marker="o", ms=0, capsize=2, label=name)  # fmt: skip
            ax.errorbar(eps, [r["final_acc_mean"] for r in pts], yerr=[r["final_acc_std"] or 0 for r in pts],
                        color=c, ls=":", capsize=2, alpha=0.7)  # fmt: skip
            for r in pts:
                proven = r["guarantee"] == "proven"
                ax.plot([r["epsilon"]], [r["max_acc_mean"]], marker="o", ms=5, color=c,
                        mfc=c if proven else "white")  # fmt: skip
                if r["pareto"]:
                    ax.plot([r["epsilon"]], [r["max_acc_mean"]], marker="o", ms=10, mfc="none", color="k")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("epsilon (log)")
        ax.grid(alpha=0.3, which="both")
    axes[0, 0].set_ylabel("test accuracy (solid: max, dotted: final)")
    axes[0, 0].legend(fontsize=7, title="hollow: heuristic ε; ring: Pareto", title_fontsize=7)
    return _save(fig, path)
