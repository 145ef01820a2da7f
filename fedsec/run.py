"""``fedsec.run(config) -> RunResult``: every defense of a config on the same data, attack and seed.

The run directory holds one finished sub-directory per defense (each written atomically, see
:mod:`fedsec.outputs`), then, at the top, the resolved config, ``summary.csv``, ``report.md`` and the
plots. Interrupting a run keeps the defenses that finished. While a run is in progress (and after one
that failed) the directory holds ``INCOMPLETE``, removed only once the report is written, so a run
that did not finish never looks complete (even next to the report of an earlier run).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fedsec.config import Config
from fedsec.errors import ConfigError
from fedsec.outputs import atomic_write_text, clean_partials, ensure_writable_dir, slug
from fedsec.simulation import UnitResult, simulate
from fedsec.validate import check_run

ProgressFn = Callable[[int, int], None]

#: Marker file of a run directory whose run has not finished (see the module docstring).
INCOMPLETE = "INCOMPLETE"

#: Where the rounds run: this process, or Flower's simulation engine (:mod:`fedsec.flower`).
ENGINES = ("inprocess", "flower")


@dataclass
class RunResult:
    """Results of :func:`run`: one :class:`~fedsec.simulation.UnitResult` per defense."""

    config: Config
    units: list[UnitResult] = field(default_factory=list)
    out_dir: Path | None = None

    def __getitem__(self, label: str) -> UnitResult:
        for u in self.units:
            if u.label == label:
                return u
        raise KeyError(f"no defense {label!r}; have {[u.label for u in self.units]}")

    def table(self) -> list[dict[str, Any]]:
        """One row per defense: max/final accuracy, aggregation ms per round, detection rates, seconds."""
        rows = []
        for u in self.units:
            s = u.summary
            rows.append(
                {
                    "defense": u.label,
                    "max_acc": s["max_accuracy"],
                    "final_acc": s["final_accuracy"],
                    "agg_ms": 1e3 * s["agg_seconds_mean"],
                    "byz_tpr": s.get("byz_detection_tpr"),
                    "byz_fpr": s.get("byz_detection_fpr"),
                    "backdoor": s.get("backdoor_success"),
                    "epsilon": (s.get("privacy") or {}).get("epsilon"),
                    "dp_guarantee": (s.get("privacy") or {}).get("guarantee"),
                    "seconds": s["seconds"],
                }
            )
        return rows


def _unit_runner(engine: str) -> Callable[..., UnitResult]:
    """The function that runs one defense on ``engine``."""
    if engine not in ENGINES:
        raise ConfigError(f"engine: got {engine!r}; want one of {list(ENGINES)}")
    if engine == "flower":
        from fedsec.flower import simulate as flower_simulate  # MissingExtraError without flwr

        return flower_simulate
    return simulate


def _with_progress_bar(body: Callable[[ProgressFn | None], None], description: str, total: int) -> None:
    """Run ``body`` with a rich progress bar on stderr that it advances through its callback."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task(description, total=total)
        body(lambda t, _n: bar.update(task, completed=t))


def run(
    config: Config | str | Path,
    *,
    out: str | Path | None = None,
    overrides: Sequence[str] = (),
    write: bool = True,
    progress: bool = False,
    on_unit: Callable[[UnitResult], None] | None = None,
    model: torch.nn.Module | None = None,
    engine: str = "inprocess",
) -> RunResult:
    """Run every defense of ``config`` (a :class:`Config` or a TOML path).

    Args:
        out: run directory (default ``config.output.dir``); ignored when ``write`` is False.
        overrides: ``section.key=value`` strings applied to the config.
        write: write the run directory (metrics, summary, report, plots).
        progress: show a rich progress bar on stderr.
        on_unit: called after each defense finishes.
        model: any ``torch.nn.Module`` to train instead of ``[model] name`` (its parameters are the
            initial model of every defense; the module itself is not modified).
        engine: ``"inprocess"`` (default) or ``"flower"``: Flower's simulation engine, one SuperNode
            per client (:func:`fedsec.flower.simulate`; needs the ``flower`` extra). Same outputs.

    Example:
        >>> from fedsec import Config, run
        >>> cfg = Config.from_dict({"data": {"dataset": "synthetic", "n_clients": 4, "min_samples": 2},
        ...                         "model": {"name": "logreg"}, "train": {"rounds": 2}})
        >>> res = run(cfg, write=False)
        >>> [row["defense"] for row in res.table()]
        ['mean']
    """
    cfg = (
        Config.from_toml(config, overrides)
        if isinstance(config, str | Path)
        else config.with_overrides(overrides)
    )
    unit_run = _unit_runner(engine)
    check_run(cfg)  # every defense and the attack are built and checked before the first trains
    root: Path | None = None
    if write:
        root = ensure_writable_dir(Path(out if out is not None else cfg.output.dir))
        clean_partials(root)
        atomic_write_text(
            root / INCOMPLETE, "this run has not finished: its defenses and report may be missing\n"
        )
    result = RunResult(cfg, [], root)
    units = cfg.units()
    total = cfg.train.rounds * len(units)

    def body(tick: ProgressFn | None) -> None:
        done = 0
        for unit in units:
            cb = None
            if tick is not None:

                def cb(t: int, _n: int, base: int = done) -> None:
                    tick(base + t, total)

            res = unit_run(
                unit, root / slug(unit.defense.label) if root is not None else None, progress=cb, model=model
            )
            done += cfg.train.rounds
            result.units.append(res)
            if on_unit is not None:
                on_unit(res)

    if progress:
        _with_progress_bar(body, f"{cfg.name}: {len(units)} defense(s)", total)
    else:
        body(None)

    if root is not None:
        from fedsec.report import write_report

        atomic_write_text(root / "config.toml", cfg.to_toml())
        write_report(root, plots=cfg.output.plots)
        (root / INCOMPLETE).unlink(missing_ok=True)
    return result
