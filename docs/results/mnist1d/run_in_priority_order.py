"""Run the units of examples/stress_mnist1d.toml in an order that makes an interrupted run useful.

The same 540 units as ``fedsec sweep examples/stress_mnist1d.toml --jobs 2`` (same config hashes, same
run directories, so either command resumes the other), ordered: seed 0 first, and within a seed the
paper's calibrated attacks (ALIE z=8, IPM eps=2.5) and the z=0 baseline before the other strengths,
beta from 0.5 down to 0.1. Usage: ``python docs/results/mnist1d/run_in_priority_order.py [jobs]``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from fedsec.config import Config
from fedsec.sweep import expand, run_units

ORDER = [
    ("alie", 0.0),
    ("alie", 8.0),
    ("ipm", 2.5),
    ("alie", 2.5),
    ("ipm", 10.0),
    ("alie", 10.0),
    ("ipm", 0.5),
    ("alie", 5.0),
    ("ipm", 5.0),
    ("ipm", 8.0),
    ("alie", 0.5),
    ("ipm", 0.0),
]


def main() -> None:
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    cfg = Config.from_toml("examples/stress_mnist1d.toml")
    units = sorted(
        expand(cfg),
        key=lambda u: (
            u.train.seed,
            ORDER.index((u.attack.name, float(u.attack.strength or 0.0))) // 3,
            -u.data.beta,
            ORDER.index((u.attack.name, float(u.attack.strength or 0.0))),
        ),
    )
    t0 = time.time()
    n = 0

    def log(s: dict) -> None:
        nonlocal n
        n += 1
        print(
            f"{time.time() - t0:7.0f}s {n:3d} seed={s['seed']} beta={s['beta']} "
            f"{s['attack']}({s['strength']:g}) {s['label']}: "
            f"max_acc={s['max_accuracy']:.3f} ({s['seconds']:.0f}s)",
            flush=True,
        )

    res = run_units(units, Path(cfg.output.dir), jobs=jobs, on_done=log)
    print(f"done: {len(res.ran)} ran, {len(res.skipped)} skipped of {res.total}", flush=True)


if __name__ == "__main__":
    main()
