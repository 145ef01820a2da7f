"""``fedsec audit``: the argument parser and the command (the measurement is :mod:`fedsec.audit`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fedsec.audit import AuditError, AuditSpec, parse_network, total_steps

#: (input shape, classes) of the datasets a ``--model`` is sized for (MNIST-like 28x28 grey images).
MODEL_INPUT = ((1, 28, 28), 10)
#: (input shape, classes) of the fixed-shape datasets a CONFIG's model is sized on.
DATASET_INPUT = {
    "digits": ((1, 8, 8), 10),
    "fmnist": ((1, 28, 28), 10),
    "svhn": ((3, 32, 32), 10),
    "cifar10": ((3, 32, 32), 10),
}
DEFAULT_MECHANISMS = "plain,secagg,secagg_plus,secagg_ddp,ckks,paillier,prio"


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise AuditError(f"got {text!r}; want comma-separated integers such as 10,25,50") from e


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register the ``audit`` subcommand on ``sub`` (the parser's subparsers)."""
    p: argparse.ArgumentParser = sub.add_parser(
        "audit",
        help="protocol overhead and leakage per mechanism, party role and phase",
        description="Run each mechanism composed with --rule on the same stacks for every n in --clients "
        "and d in --dim (or --model); write audit.md, audit.csv, audit.json and figures: per-role and "
        "per-phase seconds, bytes and communication rounds, expansion against a plain float32 upload, "
        "the leakage record, growth exponents and a network-model wall clock. With CONFIG, its "
        "defenses' mechanisms, first defense's rule, clients per round and model size are the defaults.",
    )
    p.add_argument("config", nargs="?", type=Path, default=None, help="optional experiment TOML")
    p.add_argument(
        "--mechanisms",
        default=None,
        help=f"comma-separated mechanisms (default: CONFIG's, else {DEFAULT_MECHANISMS})",
    )
    p.add_argument("--rule", default=None, help="robust rule by name (default: CONFIG's, else mean)")
    p.add_argument(
        "--rule-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a rule parameter, VALUE parsed as TOML (repeatable), e.g. --rule-arg f=5",
    )
    p.add_argument("--clients", default=None, help="comma-separated n (default: CONFIG's cohort, else 25)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--dim", default=None, help="comma-separated d (default: the LeNet-5 size)")
    size.add_argument("--model", default=None, help="d = the parameter count of this model on 28x28 images")
    p.add_argument(
        "--dropout",
        type=float,
        default=0.0,
        help="also audit with this dropout rate, where the mechanism models dropout",
    )
    p.add_argument("--repeats", type=int, default=3, help="runs per case (default 3)")
    p.add_argument(
        "--budget",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="a case predicted slower than this is extrapolated from smaller d (default 60)",
    )
    p.add_argument("--no-extrapolate", action="store_true", help="run every case at its size")
    p.add_argument(
        "--bandwidth",
        default="100Mbit",
        help="link rate, one value or per role: client=20Mbit,server=1Gbit (default 100Mbit)",
    )
    p.add_argument("--rtt", default="50ms", help="round-trip time per communication round (default 50ms)")
    p.add_argument("--out", type=Path, default=Path("runs/audit"), metavar="DIR")
    p.add_argument("--no-plots", action="store_true", help="tables only")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def model_dim(name: str) -> int:
    """Parameter count of model ``name`` on :data:`MODEL_INPUT`."""
    from fedsec.models import make_model, num_parameters

    try:
        return num_parameters(make_model(name, *MODEL_INPUT))
    except KeyError as e:
        raise AuditError(f"model: got {name!r}; want a registered model ({e})") from e


def config_defaults(path: Path) -> dict[str, Any]:
    """What CONFIG fixes: the mechanisms of its defenses (``[[defense]] mechanism``, else ``[protocol]``),
    its first defense built as in a run (rule, pre-aggregators, assumed ``f``), the clients per round
    and its model's parameter count on its dataset's input shape."""
    from dataclasses import replace

    from fedsec.build import build_defense
    from fedsec.config import Config
    from fedsec.models import make_model, num_parameters
    from protocols.mechanisms import MECHANISMS

    cfg = Config.from_toml(path)
    mechs = list(dict.fromkeys(cfg.mechanism(d) for d in cfg.defenses))
    unknown = [m for m in mechs if m not in MECHANISMS]
    if unknown:
        raise AuditError(f"config mechanisms: got {unknown}; want mechanisms of {MECHANISMS.names()}")
    shape = DATASET_INPUT.get(cfg.data.dataset)
    dim = None
    if shape is not None:
        dim = num_parameters(make_model(cfg.model.name, *shape, **cfg.model.kwargs))
    return {
        "mechanisms": mechs,
        "rule": build_defense(replace(cfg, defenses=cfg.defenses[:1])),
        "clients": [cfg.train.clients_per_round or cfg.data.n_clients],
        "dims": [dim] if dim is not None else None,
        "dataset": cfg.data.dataset,
    }


def spec_from_args(args: argparse.Namespace) -> AuditSpec:
    import robust
    from fedsec.config import parse_value

    base = config_defaults(args.config) if args.config is not None else {}
    kw = {}
    for item in args.rule_arg:
        key, eq, value = item.partition("=")
        if not eq:
            raise AuditError(f"rule-arg: got {item!r}; want KEY=VALUE")
        kw[key.strip()] = parse_value(value.strip())
    if args.dim:
        dims = _ints(args.dim)
    elif args.model or not base:
        dims = [model_dim(args.model or "lenet5")]
    elif base["dims"] is None:
        raise AuditError(
            f"config dataset: got {base['dataset']!r}; want one of {sorted(DATASET_INPUT)} or --dim/--model"
        )
    else:
        dims = base["dims"]
    mechs = args.mechanisms or (None if base else DEFAULT_MECHANISMS)
    rule = robust.make(args.rule or "mean", **kw) if args.rule or kw or not base else base["rule"]
    return AuditSpec(
        mechanisms=[m.strip() for m in mechs.split(",") if m.strip()] if mechs else base["mechanisms"],
        rule=rule,
        clients=_ints(args.clients) if args.clients else base.get("clients", [25]),
        dims=dims,
        dropout=args.dropout,
        repeats=args.repeats,
        budget_s=args.budget,
        extrapolate=not args.no_extrapolate,
    )


def cmd_audit(args: argparse.Namespace) -> int:
    from fedsec.audit import audit
    from fedsec.audit_report import write

    spec = spec_from_args(args)
    network = parse_network(args.bandwidth, args.rtt)
    if args.quiet:
        cases, refused = audit(spec)
    else:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=True,
        ) as bar:
            task = bar.add_task("audit", total=total_steps(spec))
            cases, refused = audit(spec, lambda what: bar.update(task, advance=1, description=what))
    obj = write(args.out, spec, network, cases, refused, plots=not args.no_plots)
    for s in obj["summary"]:
        mark = " (extrapolated)" if s["extrapolated"] else ""
        print(
            f"{s['label']:<28} n={s['n']:<4} d={s['d']:<8} drop={s['dropout']:g}  client sent "
            f"{s['client_bytes_sent']:.0f} B ({s['expansion']:.3g}x)  server {s['server_seconds']:.3g} s"
            f"{mark}"
        )
    for line in refused:
        print(f"not audited: {line}")
    print(f"wrote {args.out / 'audit.md'}")
    return 0
