"""Rounds per minute of one fedsec config on the in-process engine and on Flower's simulation engine.

The config: the quickstart's setting (digits, 25 clients with Dirichlet(0.3) label skew, an MLP, FedSGD
with worker momentum, 5 ALIE clients) with one defense, trimmed mean after NNM. Flower runs one SuperNode
per client on Ray with 2 CPUs (one ClientApp worker per CPU), the server app in the driver process.

Per engine and repeat: the steady rate, ``60 * (R - 1) / (t_R - t_1)`` from the end times of rounds 1
and R (the first round carries Flower's worker start-up: process spawn, imports, data loading), and the
wall time of the whole run including set-up (for Flower: Ray's start and stop). Medians over repeats.
Other processes may share the CPU: absolute figures move with load; the ratio is the result.

Usage: python benchmarks/flower_engine.py [--rounds 20] [--repeats 3] [--clients 25]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import _bench  # noqa: F401

from fedsec.config import Config
from fedsec.simulation import UnitResult, simulate


def config(rounds: int, clients: int) -> Config:
    return Config.from_dict(
        {
            "name": "flower_engine",
            "data": {"dataset": "digits", "n_clients": clients, "beta": 0.3, "min_samples": 8},
            "model": {"name": "mlp"},
            "train": {"mode": "fedsgd", "rounds": rounds, "lr": 0.1, "momentum": 0.9, "batch_size": 32},
            "attack": {"name": "alie", "f": clients // 5, "strength": 10.0},
            "eval": {"every": rounds},
            "output": {"plots": False},
            "defense": [{"rule": "trimmed_mean", "pre": ["nnm"]}],
        }
    )


def timed(engine: Callable[..., UnitResult], cfg: Config) -> tuple[float, float, float]:
    """(steady rounds per minute, wall seconds, final accuracy) of one run."""
    ends: list[float] = []
    t0 = time.perf_counter()
    res = engine(cfg, progress=lambda t, n: ends.append(time.perf_counter()))
    wall = time.perf_counter() - t0
    steady = 60.0 * (len(ends) - 1) / (ends[-1] - ends[0])
    return steady, wall, res.final_accuracy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--clients", type=int, default=25)
    args = ap.parse_args()
    from fedsec.flower import simulate as flower_simulate

    cfg = config(args.rounds, args.clients)
    engines: dict[str, Callable[..., UnitResult]] = {
        "in-process": simulate,
        "flower (ray, 2 cpus)": flower_simulate,
    }
    rows: list[dict[str, Any]] = []
    for name, engine in engines.items():
        runs = [timed(engine, cfg) for _ in range(args.repeats)]
        rows.append(
            {
                "engine": name,
                "rounds/min": statistics.median(r[0] for r in runs),
                "wall s": statistics.median(r[1] for r in runs),
                "wall rounds/min": 60.0 * args.rounds / statistics.median(r[1] for r in runs),
                "final acc": runs[-1][2],
            }
        )
    print(
        f"\n{args.clients} clients on digits, {args.rounds} rounds, trimmed_mean(nnm), "
        f"medians of {args.repeats} runs"
    )
    print(f"{'engine':<22}{'rounds/min':>12}{'wall s':>10}{'wall rounds/min':>17}{'final acc':>11}")
    for r in rows:
        print(
            f"{r['engine']:<22}{r['rounds/min']:>12.1f}{r['wall s']:>10.1f}"
            f"{r['wall rounds/min']:>17.1f}{r['final acc']:>11.3f}"
        )
    base, fl = rows[0]["rounds/min"], rows[1]["rounds/min"]
    print(f"in-process / flower steady rate: {base / fl:.1f}x")


if __name__ == "__main__":
    main()
