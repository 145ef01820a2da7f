"""``fedsec stress``: per defense and beta, find the attack strength that does the most damage.

The stress-testing paper argues that an attack's strength must be calibrated to the data
heterogeneity: a strength that is harmless at beta = 0.5 may be devastating at beta = 0.1. For every
(defense, beta) this searches the ``[stress] strengths`` grid for the strength with the lowest max
accuracy (mean over ``seeds``), then, ``refine`` times, also tries the midpoints between the current
worst strength and its neighbours. The worst case is reported. All runs are unit runs under
``<out>/runs`` and are resumable like a sweep.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fedsec.config import Config, SweepConfig
from fedsec.errors import ConfigError
from fedsec.outputs import atomic_write_text, csv_text, ensure_writable_dir
from fedsec.report import md_table
from fedsec.sweep import run_units


def _units(cfg: Config, betas: Sequence[float], strengths: Sequence[float]) -> list[Config]:
    out = []
    for beta in betas:
        for s in strengths:
            for seed in cfg.stress.seeds:
                point = cfg.replace(**{"data.beta": beta, "attack.strength": float(s), "train.seed": seed})
                out += point.units()
    return out


def worst_cases(summaries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (defense, beta): the strength of lowest mean max accuracy, and the accuracy without attack."""
    acc: dict[tuple[str, float], dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for s in summaries:
        acc[(s["label"], float(s["beta"]))][float(s["strength"])].append(float(s["max_accuracy"]))
    rows = []
    for (label, beta), per in sorted(acc.items()):
        means = {k: float(np.mean(v)) for k, v in per.items()}
        worst = min(means, key=lambda k: (means[k], k))
        rows.append(
            {
                "defense": label,
                "beta": beta,
                "worst_strength": worst,
                "worst_max_acc": means[worst],
                "worst_std": float(np.std(per[worst])),
                "acc_at_0": means.get(0.0),
                "tried": ", ".join(f"{k:g}" for k in sorted(means)),
            }
        )
    return rows


def _midpoints(tried: Sequence[float], worst: float) -> list[float]:
    xs = sorted(tried)
    i = xs.index(worst)
    mids = []
    if i > 0:
        mids.append((xs[i - 1] + worst) / 2)
    if i + 1 < len(xs):
        mids.append((worst + xs[i + 1]) / 2)
    return mids


def stress(
    config: Config | str | Path,
    *,
    out: str | Path | None = None,
    overrides: Sequence[str] = (),
    jobs: int = 1,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Run the strength search; write ``stress.csv`` and ``stress.md`` under ``out``; return worst cases."""
    cfg = (
        Config.from_toml(config, overrides)
        if isinstance(config, str | Path)
        else config.with_overrides(overrides)
    )
    if cfg.attack.name == "none" or cfg.attack.f == 0:
        raise ConfigError(
            f"attack.name: got {cfg.attack.name!r} with f={cfg.attack.f}; "
            "want an attack with a strength and f > 0"
        )
    root = ensure_writable_dir(Path(out if out is not None else cfg.output.dir))
    runs = root / "runs"
    base = dataclasses.replace(cfg, sweep=SweepConfig())
    summaries: list[dict[str, Any]] = []
    strengths = sorted(set(cfg.stress.strengths))

    def collect(units: list[Config]) -> None:
        res = run_units(units, runs, jobs=jobs, progress=progress, description="stress")
        summaries.extend(res.ran)
        summaries.extend(json.loads((d / "summary.json").read_text()) for d in res.skipped)

    collect(_units(base, cfg.stress.betas, strengths))
    rows = worst_cases(summaries)
    for _ in range(cfg.stress.refine):
        extra: list[Config] = []
        for r in rows:
            tried = [float(x) for x in r["tried"].split(", ")]
            mids = [m for m in _midpoints(tried, r["worst_strength"]) if m not in tried]
            if mids:
                point = base.replace(**{"defense": r["defense"]})
                extra += _units(point, [r["beta"]], mids)
        if not extra:
            break
        collect(extra)
        rows = worst_cases(summaries)
    atomic_write_text(root / "stress.csv", csv_text(rows))
    md = (
        f"# Stress test: {cfg.name} ({cfg.attack.name}, {cfg.attack.f} of {cfg.data.n_clients} Byzantine)\n\n"
    )
    md += "Worst case per defense and beta: the attack strength with the lowest max top-1 accuracy "
    md += f"(mean over seeds {list(cfg.stress.seeds)}).\n\n" + md_table(rows)
    atomic_write_text(root / "stress.md", md)
    (root / "config.toml").write_text(cfg.to_toml())
    return rows
