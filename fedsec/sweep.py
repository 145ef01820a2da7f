"""``fedsec sweep``: expand the ``[sweep]`` grid into unit runs and execute them, resumably.

Each unit run (one defense, scalar settings) lives in ``<out>/<defense>-<config hash>``; a directory
that already holds a finished run with that hash is skipped, so a sweep stopped midway (Ctrl-C, a
crash) restarts where it stopped and keeps every finished run. ``jobs > 1`` runs units in separate
processes (spawned, one torch thread each).
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import tomllib

from fedsec.config import Config
from fedsec.outputs import clean_partials, ensure_writable_dir, is_finished, slug


def expand(cfg: Config) -> list[Config]:
    """All unit configs of the grid (Cartesian product of ``[sweep]`` lists x defenses), deduplicated."""
    keys = list(cfg.sweep.grid)
    seen: dict[str, Config] = {}
    for combo in itertools.product(*(cfg.sweep.grid[k] for k in keys)):
        point = cfg.replace(**dict(zip(keys, combo))) if keys else cfg
        for unit in point.units():
            seen.setdefault(unit.hash(), unit)
    return list(seen.values())


def unit_dir(root: Path, unit: Config) -> Path:
    return root / f"{slug(unit.defense.label)}-{unit.hash()}"


def _run_unit(toml_text: str, run_dir: str, threads: int) -> dict[str, Any]:
    """Process-pool entry point: rebuild the config from TOML text and run it."""
    import torch

    from fedsec.simulation import simulate

    if threads:
        torch.set_num_threads(threads)
    unit = Config.from_dict(tomllib.loads(toml_text))
    return simulate(unit, Path(run_dir)).summary


@contextmanager
def _packages_first_on_path() -> Iterator[None]:
    """Spawned workers inherit ``sys.path``; put the directory holding fedsec's packages first so that
    a same-named directory earlier on the path (e.g. a test folder ``tests/robust``) cannot shadow them."""
    root = str(Path(__file__).resolve().parents[1])
    sys.path.insert(0, root)
    try:
        yield
    finally:
        sys.path.remove(root)


@dataclass
class SweepResult:
    """What a sweep did: finished unit summaries (new ones), skipped unit directories."""

    out_dir: Path
    ran: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    total: int = 0


def run_units(
    units: Sequence[Config],
    root: Path,
    *,
    jobs: int = 1,
    progress: bool = False,
    description: str = "sweep",
    on_done: Callable[[dict[str, Any]], None] | None = None,
) -> SweepResult:
    """Run ``units`` under ``root``, skipping finished ones; returns what ran and what was skipped.

    Every unit is validated (:func:`fedsec.validate.check_run`) before the first one runs."""
    from fedsec.validate import check_run

    for u in units:
        check_run(u)
    root = ensure_writable_dir(Path(root))
    clean_partials(root)
    res = SweepResult(root, total=len(units))
    todo = []
    for u in units:
        d = unit_dir(root, u)
        if is_finished(d, u.hash()):
            res.skipped.append(d)
        else:
            todo.append((u, d))
    bar: Any = None
    task: Any = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
        )
        bar.start()
        task = bar.add_task(
            f"{description} ({len(res.skipped)} already done)", total=len(units), completed=len(res.skipped)
        )

    def done(summary: dict[str, Any]) -> None:
        res.ran.append(summary)
        if on_done is not None:
            on_done(summary)
        if bar is not None:
            bar.advance(task)

    try:
        if jobs <= 1:
            from fedsec.simulation import simulate

            for u, d in todo:
                done(simulate(u, d).summary)
        else:
            with (
                _packages_first_on_path(),
                ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool,
            ):
                pending: set[Future[dict[str, Any]]] = {
                    pool.submit(_run_unit, u.to_toml(), str(d), 1) for u, d in todo
                }
                try:
                    while pending:
                        finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for fut in finished:
                            done(fut.result())
                except BaseException:
                    for fut in pending:
                        fut.cancel()
                    raise
    finally:
        if bar is not None:
            bar.stop()
    return res


def sweep(
    config: Config | str | Path,
    *,
    out: str | Path | None = None,
    overrides: Sequence[str] = (),
    jobs: int = 1,
    progress: bool = False,
    report: bool = True,
) -> SweepResult:
    """Expand and run the grid of ``config``, then write the sweep report (unless ``report=False``)."""
    cfg = (
        Config.from_toml(config, overrides)
        if isinstance(config, str | Path)
        else config.with_overrides(overrides)
    )
    root = Path(out if out is not None else cfg.output.dir)
    units = expand(cfg)
    res = run_units(units, root, jobs=jobs, progress=progress, description=cfg.name)
    (root / "config.toml").write_text(cfg.to_toml())
    if report:
        from fedsec.report import write_report

        write_report(root, plots=cfg.output.plots)
    return res
