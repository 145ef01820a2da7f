"""Benchmark of masked secure aggregation (SecAgg, SecAgg+) against its PRG bound.

For each (n, d, dropout, graph) the script runs whole rounds in-process over bytes (every client and the
server), with the dropped clients leaving after ShareKeys (the server then reconstructs their mask keys
and removes their pairwise masks: the costly case). Reported, as medians over repeats (and over clients
for client columns):

- client s: one client's seconds over all phases; mask s: its MaskedInputCollection seconds;
  prg s: the time the generator alone (libsodium's ChaCha20 stream into a preallocated buffer) takes to
  expand that client's masks (1 + its neighbours in U2), measured right after each round; ratio = the
  median over rounds of that round's mask s / prg s.
- server s: the server's seconds over all phases; unmask s: its Unmasking seconds; prg s: the generator
  alone for the server's masks (|U3| self masks + one per (dropped, surviving neighbour) pair);
  ratio = the median over rounds of unmask s / prg s.
- B/client up, B/client down: bytes one client sends / receives; B server in: bytes the server receives;
  up/(4d): a client's upload relative to the 4 bytes x d of its masked input.

Usage: ``python benchmarks/secagg.py [--quick | --target] [--repeats R] [--active]``; ``--target`` runs
only the issue's target row (n = 100, d = 1e5, 10% dropout, both graphs). The full grid (n in {25, 100, 200},
d in {1e4, 1e5, 1e6}, dropout in {0, 0.1, 0.3}, complete and SecAgg+) takes hours on a laptop core;
``--quick`` runs n in {25, 100}, d in {1e4, 1e5} plus a SecAgg+ scaling series at d = 1e4.
Other processes may share the CPU: timings are medians over repeats, and ratios compare quantities
measured in the same round.
"""

from __future__ import annotations

import argparse
import math
import secrets
import statistics
import time
from typing import Any

import _bench  # noqa: F401
import numpy as np

from protocols.base import Meter
from secagg import prg
from secagg.driver import run_round
from secagg.graph import choose_degree, default_threshold, neighbours


def _prg_seconds(masks: int, d: int) -> float:
    """The generator alone: libsodium's ChaCha20 stream writing ``masks`` x ``d`` words into one
    preallocated buffer (no seed derivation, key agreement or addition)."""
    seed = secrets.token_bytes(32)
    buf = np.empty(d, dtype=prg.word_dtype(32))
    t0 = time.perf_counter()
    for _ in range(masks):
        prg.fill(buf, seed)
    return time.perf_counter() - t0


def one_round(
    n: int, d: int, dropout: float, plus: bool, rng: np.random.Generator, active: bool = False
) -> dict[str, Any]:
    c = 0
    if plus:
        ch = choose_degree(n, dropout=max(dropout, 0.1), active=active)
        k, t, c = (None, ch.t, ch.corrupt) if ch.complete else (ch.k, ch.t, ch.corrupt)
    else:
        k, c = None, math.floor(0.2 * n)
        t = default_threshold(n, active, c)
    n_drop = round(dropout * n)
    dropped = sorted(int(i) for i in rng.choice(n, size=n_drop, replace=False))
    x = rng.integers(0, 2**32, size=(n, d), dtype=np.uint64)
    session = secrets.token_bytes(16)
    meter = Meter()
    out = run_round(
        x,
        t=t,
        k=k,
        dropouts=dict.fromkeys(dropped, "masked_input"),
        meter=meter,
        session=session,
        active=active,
        corrupt=c,
    )
    graph = neighbours(n, k, session)
    u3 = set(out.survivors)
    # a surviving client masks with itself and its neighbours in U2 (= everybody here: drops come later)
    c = out.survivors[0]
    client_masks = 1 + len(graph[c])
    server_masks = len(u3) + sum(sum(1 for u in graph[v] if u in u3) for v in dropped)
    clients = [f"client[{i}]" for i in out.survivors]
    mask_s = statistics.median(meter.total(p, "masked_input").seconds for p in clients)
    unmask_s = meter.total("server", "unmasking").seconds
    client_prg_s = _prg_seconds(client_masks, d)
    server_prg_s = _prg_seconds(server_masks, d)
    return {
        "k": n - 1 if k is None else k,
        "client_s": statistics.median(meter.total(p).seconds for p in clients),
        "mask_s": mask_s,
        "client_prg_s": client_prg_s,
        "client_ratio": mask_s / client_prg_s,
        "server_s": meter.total("server").seconds,
        "unmask_s": unmask_s,
        "server_prg_s": server_prg_s,
        "server_ratio": unmask_s / server_prg_s,
        "up": statistics.median(meter.total(p).bytes_sent for p in clients),
        "down": statistics.median(meter.total(p).bytes_received for p in clients),
        "server_in": meter.total("server").bytes_received,
    }


def run(grid: list[tuple[int, int, float, bool]], repeats: int, active: bool = False) -> None:
    rng = np.random.default_rng(2026)  # chooses dropped clients and inputs only
    head = (
        f"{'graph':>8} {'n':>4} {'k':>4} {'d':>8} {'drop':>5} | {'client s':>9} {'mask s':>8} {'prg s':>8} "
        f"{'ratio':>5} | {'server s':>9} {'unmask s':>9} {'prg s':>8} {'ratio':>5} | {'B/client up':>11} "
        f"{'up/(4d)':>7} {'B/client dn':>11} {'B server in':>12}"
    )
    print(head)
    print("-" * len(head))
    for n, d, dropout, plus in grid:
        rows = [one_round(n, d, dropout, plus, rng, active) for _ in range(repeats)]
        med = {key: statistics.median(r[key] for r in rows) for key in rows[0]}
        print(
            f"{'secagg+' if plus else 'complete':>8} {n:>4} {int(med['k']):>4} {d:>8} {dropout:>5.0%} | "
            f"{med['client_s']:>9.3f} {med['mask_s']:>8.3f} {med['client_prg_s']:>8.3f} "
            f"{med['client_ratio']:>5.2f} | {med['server_s']:>9.3f} {med['unmask_s']:>9.3f} "
            f"{med['server_prg_s']:>8.3f} {med['server_ratio']:>5.2f} | "
            f"{int(med['up']):>11} {med['up'] / (4 * d):>7.3f} {int(med['down']):>11} "
            f"{int(med['server_in']):>12}",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a smaller grid (see the module docstring)")
    ap.add_argument("--target", action="store_true", help="only n = 100, d = 1e5, 10%% dropout")
    ap.add_argument("--repeats", type=int, default=3, help="rounds per configuration (median reported)")
    ap.add_argument(
        "--active", action="store_true", help="the active variant (consistency check; t > (m + c) / 2)"
    )
    args = ap.parse_args()
    if args.target:
        ns, ds = [100], [100_000]
    elif args.quick:
        ns, ds = [25, 100], [10_000, 100_000]
    else:
        ns, ds = [25, 100, 200], [10_000, 100_000, 1_000_000]
    drops = (0.1,) if args.target else (0.0, 0.1, 0.3)
    grid = [(n, d, p, plus) for plus in (False, True) for n in ns for d in ds for p in drops]
    if args.quick:
        grid += [(n, 10_000, 0.1, True) for n in (200, 400)]
    variant = "active, c = floor(0.2 n)" if args.active else "passive"
    print(
        f"secagg benchmark ({variant}): bits=32, t = default_threshold (SecAgg+: k, t from choose_degree), "
        f"{args.repeats} repeats"
    )
    run(grid, args.repeats, args.active)


if __name__ == "__main__":
    main()
