"""Benchmark of the identifiable abort of ``secagg_normbound``: an honest round against rounds with one
cheating client.

Rows per (n, d): ``honest``; ``other vector`` (one client masks a vector other than the one it committed
to; its per-client check names it: steps blame_commit + blame_prove); ``false pads`` (it also hides that
behind a false pad commitment; a pair dispute names it: blame_pairs as well). Columns, medians over
repeats: round s (wall seconds of the whole round, every party in-process on one core), blame s (all
parties' seconds in the blame phases), the seconds of each blame phase (all parties), blame kB (all
messages of the blame phases) and the client's upload in the blame phases relative to its masked input.

Usage: ``python benchmarks/normbound_blame.py [--n 10] [--dims 1000 10000] [--repeats 3]``.
Other processes may share the CPU: timings are medians over repeats.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder leads sys.path and benchmarks/secagg.py would shadow the
# ``secagg`` package: drop that entry before importing.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from protocols.secagg_normbound import SecAggNormBound, encode_within_bound  # noqa: E402

PHASES = ("blame_commit", "blame_prove", "blame_pairs")


def _round(proto: SecAggNormBound, x: np.ndarray, case: str) -> dict[str, float]:
    n = len(x)
    faults: dict[str, object] = {}
    if case != "honest":
        q = encode_within_bound(proto.config, x[1], n)
        faults["mask_instead"] = {1: q + 1}
    if case == "false pads":
        faults["lie_pads"] = {1}
    t0 = time.perf_counter()
    res = proto.run_round(torch.tensor(x, dtype=torch.float32), **faults)  # type: ignore[arg-type]
    wall = time.perf_counter() - t0
    want = list(range(n)) if case == "honest" else [i for i in range(n) if i != 1]
    if res.accepted != want:
        raise RuntimeError(f"{case}: got accepted {res.accepted}; want {want}")
    row = {"round s": wall}
    for ph in PHASES:
        row[ph] = res.meter.total(phase=ph).seconds
    row["blame s"] = sum(row[ph] for ph in PHASES)
    row["blame kB"] = sum(res.meter.total("client", ph).bytes_sent for ph in PHASES) / 1e3
    row["masked kB"] = res.meter.total("client", "masked_input").bytes_sent / 1e3
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--dims", type=int, nargs="+", default=[1000])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    cols = ["round s", "blame s", *PHASES, "blame kB", "masked kB"]
    print(f"| n | d | case | {' | '.join(cols)} |")
    print("|" + "---|" * (3 + len(cols)))
    for d in args.dims:
        g = np.random.default_rng(d)
        x = g.normal(size=(args.n, d))
        x *= 0.5 / np.linalg.norm(x, axis=1, keepdims=True)
        proto = SecAggNormBound(bound=1.0)
        for case in ("honest", "other vector", "false pads"):
            rows = [_round(proto, x, case) for _ in range(args.repeats)]
            med = {c: statistics.median(r[c] for r in rows) for c in cols}
            cells = " | ".join(f"{med[c]:.2f}" for c in cols)
            print(f"| {args.n} | {d} | {case} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
