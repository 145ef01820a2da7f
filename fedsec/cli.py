"""The ``fedsec`` command: run, sweep, report, stress, audit.

Every user error (config, data, output path, a defense's Byzantine bound) ends the command with one
line on stderr, ``fedsec: error: ...``, and exit code 2: the typed errors of every package
(:data:`LIBRARY_PACKAGES`: ``FedsecError``, ``RobustError``, ``DPError``, ``SecAggError``,
``CKKSParameterError`` ...) are recognised by the package that defines them. Other exceptions are
bugs and keep their traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

DESCRIPTION = """\
Evaluate Byzantine robustness, secure aggregation and differential privacy together in federated
learning. With no arguments, `fedsec run` trains on the bundled digits data with 25 clients, 5 of them
Byzantine (ALIE), and compares the plain mean with robust defenses."""

EPILOG = """\
examples:
  fedsec run                                  # the bundled quickstart (about 20 s on 2 CPU cores)
  fedsec run --set attack.name=ipm --set attack.strength=2.5 --out runs/ipm
  fedsec run --engine flower --set train.rounds=20  # on Flower's simulation engine (fedsec[flower])
  fedsec sweep examples/stress_digits.toml --jobs 2
  fedsec report runs/stress_digits
  fedsec stress examples/stress_digits.toml
  fedsec audit --mechanisms plain,secagg,ckks --clients 10,25 --model lenet5 --out runs/audit
"""


def default_config() -> Path:
    """The bundled quickstart config (package data)."""
    return Path(str(resources.files("fedsec") / "configs" / "quickstart.toml"))


def _config_args(p: argparse.ArgumentParser, optional: bool) -> None:
    if optional:
        p.add_argument("config", nargs="?", type=Path, help="TOML config (default: the bundled quickstart)")
    else:
        p.add_argument("config", type=Path, help="TOML config")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config value; VALUE is parsed as TOML (repeatable), e.g. --set train.rounds=50",
    )
    p.add_argument(
        "--out", type=Path, default=None, metavar="DIR", help="output directory (default: [output] dir)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _config_command(
    sub: Any, name: str, help: str, description: str, *, optional: bool = False, jobs: bool = True
) -> argparse.ArgumentParser:
    """A subcommand reading a config (:func:`_config_args`), with ``--jobs`` when it runs a grid."""
    p: argparse.ArgumentParser = sub.add_parser(name, help=help, description=description)
    _config_args(p, optional=optional)
    if jobs:
        p.add_argument("--jobs", type=int, default=1, metavar="N", help="parallel processes (default 1)")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedsec",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from fedsec import __version__

    parser.add_argument("--version", action="version", version=f"fedsec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    _config_command(
        sub,
        "run",
        help="train once per defense on the same data and attack; print a results table",
        description="Run every [defense] of CONFIG on the same data, attack and seed. Writes the resolved "
        "config, metrics.jsonl, summary.csv, report.md (with the threat-model record) and PNG plots.",
        optional=True,
        jobs=False,
    ).add_argument(
        "--engine",
        choices=["inprocess", "flower"],
        default="inprocess",
        help="where the rounds run: this process (default) or Flower's simulation engine, one "
        'SuperNode per client (needs pip install "fedsec[flower]")',
    )
    _config_command(
        sub,
        "sweep",
        help="run the [sweep] grid (resumable, optionally in parallel processes)",
        description="Expand the [sweep] table of lists into a grid of runs (x every defense) and run it. "
        "Finished runs are kept and skipped when the sweep is restarted.",
    )

    p = sub.add_parser(
        "report",
        help="tables and figures for a run or sweep directory",
        description="Write report.md, summary.csv, accuracy curves, the Figure-1 heatmaps (max accuracy "
        "over attack strength x beta, one panel per defense), the Table-1 layout and the runtime "
        "comparison for the runs under DIR.",
    )
    p.add_argument("dir", type=Path, metavar="DIR", help="a run or sweep directory")
    p.add_argument("--no-plots", action="store_true", help="tables only")

    _config_command(
        sub,
        "stress",
        help="search the most damaging attack strength per defense and beta",
        description="For each defense and each beta in [stress], run the attack at every strength in "
        "[stress] strengths (optionally refined) and report the worst case.",
    )
    from fedsec.audit_cli import add_parser

    add_parser(sub)
    return parser


def _print_table(rows: Sequence[dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    from fedsec.report import fmt

    table = Table(title=title)
    cols = [c for c in rows[0] if any(r.get(c) is not None for r in rows)] if rows else []
    for c in cols:
        if c == "defense":
            table.add_column(c, justify="left", no_wrap=True)
        else:
            table.add_column(c, justify="right")
    for r in rows:
        table.add_row(*(fmt(r.get(c)) for c in cols))
    Console().print(table)


def _cmd_run(args: argparse.Namespace) -> int:
    from fedsec.config import Config
    from fedsec.run import run

    path = args.config or default_config()
    cfg = Config.from_toml(path, args.overrides)
    t0 = time.perf_counter()
    res = run(cfg, out=args.out, progress=not args.quiet, engine=args.engine)
    s0 = res.units[0].summary
    title = (
        f"{cfg.name}: {cfg.data.dataset}, {cfg.data.n_clients} clients, "
        f"{s0['threat_model']['byzantine_actual']} Byzantine ({s0['threat_model']['attack']}), "
        f"{s0['threat_model']['data_split']}, {cfg.train.rounds} rounds"
    )
    _print_table(res.table(), title)
    print(f"wrote {res.out_dir} in {time.perf_counter() - t0:.0f} s (report.md, summary.csv, *.png)")
    if cfg.sweep.grid:
        print("note: this config has a [sweep] grid; `fedsec sweep` runs it")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from fedsec.sweep import sweep

    res = sweep(args.config, out=args.out, overrides=args.overrides, jobs=args.jobs, progress=not args.quiet)
    print(
        f"{len(res.ran)} run(s) done, {len(res.skipped)} skipped (already finished); "
        f"report: {res.out_dir / 'report.md'}"
    )
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from fedsec.outputs import load_runs
    from fedsec.report import write_report
    from fedsec.tradeoff import group_by_setting

    if not args.dir.is_dir():
        from fedsec.errors import FedsecError

        raise FedsecError(
            f"report: got {str(args.dir)!r}, which is not a directory; want a run or sweep directory"
        )
    path = write_report(args.dir, plots=not args.no_plots)
    groups, swept = group_by_setting(load_runs(args.dir))  # every swept key apart, per-row epsilon
    cols = ("defense", "attack_label", "beta", *[k for k in swept if k != "data.beta"], "seeds",
            "max_acc_mean", "max_acc_std", "epsilon", "guarantee")  # fmt: skip
    rows = [{k: g.get(k) for k in cols} for g in groups]
    _print_table(rows, f"{args.dir}: max top-1 accuracy")
    print(f"wrote {path}")
    return 0


def _cmd_stress(args: argparse.Namespace) -> int:
    from fedsec.stress import stress

    rows = stress(
        args.config, out=args.out, overrides=args.overrides, jobs=args.jobs, progress=not args.quiet
    )
    _print_table(rows, "worst case per defense and beta")
    return 0


#: Packages whose exception classes are typed user errors (exit code 2, one line).
LIBRARY_PACKAGES = ("fedsec", "robust", "dp", "secagg", "protocols")


def is_library_error(e: BaseException) -> bool:
    """Whether ``e`` is one of the typed errors the packages raise on purpose: an instance of a class
    defined in one of :data:`LIBRARY_PACKAGES` (builtin exceptions from inside them are bugs)."""
    if not isinstance(e, Exception):
        return False
    return any(c.__module__.split(".")[0] in LIBRARY_PACKAGES for c in type(e).__mro__)


def error_line(e: BaseException) -> str:
    """The one-line message: ``fedsec: error: <message>`` with newlines folded."""
    text = " ".join(str(e).split()) or type(e).__name__
    return f"fedsec: error: {text}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fedsec`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from fedsec.audit_cli import cmd_audit

    handlers = {"run": _cmd_run, "sweep": _cmd_sweep, "report": _cmd_report, "stress": _cmd_stress,
                "audit": cmd_audit}  # fmt: skip
    try:
        return handlers[args.command](args)
    except Exception as e:
        if not is_library_error(e):
            raise
        print(error_line(e), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fedsec: interrupted; finished runs are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
