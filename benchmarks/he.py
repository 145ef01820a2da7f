"""Overhead of the HE protocols: seconds per party per phase, bytes per message, against plaintext.

Setting (the issue's): n = 25 clients, d = 61,706 (LeNet-5), f = 5, CKKS N = 8192, [60, 40, 60], 2^40.
Every protocol runs ``--repeats`` rounds on one protocol object (keys are made once, in the first round,
and reported separately as setup); each figure is the median over the rounds. The plaintext rule the
protocol reproduces is timed in the same run on the same stack (median of the same number of calls), and
the headline ratio is the protocol's critical path over it.

* ``total s``: the sum of every party's seconds (what one machine simulating all parties spends);
* ``critical s``: the slowest client's upload + server + key holder (clients work in parallel in a real
  deployment; server and key holder alternate);
* bytes: per client upload, and everything server -> key holder and key holder -> server per round.

``paillier_mean`` runs at a smaller dimension (``--paillier-d``) because one 2048-bit encryption costs
tens of milliseconds; its per-client and server figures are also shown extrapolated linearly to d
(marked ``~``; the cost is linear in the number of packed ciphertexts).

A second table shows how ``ckks_multi_krum`` grows with n (10, 25, 50): the distance phase is
quadratic in n. A third compares, per pair at dimension d, the server's two ways to compute
``E(||x_i - x_j||^2)``: chunkwise (TenSEAL relinearizes and rescales each chunk's square; the baseline)
and deferred (squares summed in degree-2 form, one relinearization and one rescale per pair; what the
protocol uses) -- alternated back to back, medians over ``--pair-repeats`` runs each.

The CPU may be shared with other processes: medians damp that, absolute times still move with load.

``--workers k`` lets the Krum server fork k processes for the pairwise distances.

Usage: python benchmarks/he.py [--quick] [--repeats 3] [--skip-scaling] [--workers 1] [--only NAME ...]
       [--pair-repeats 15]
"""

from __future__ import annotations

import argparse
import functools
import statistics
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from _bench import interleaved, median_seconds

import protocols
import robust
from protocols.base import RoundResult
from protocols.ckks.distances import DistanceEvaluator
from protocols.ckks.parties import chunk_rows, sq_distance

N, D, F, CLIP = 25, 61_706, 5, 20.0


def make_stack(n: int, d: int, f: int, seed: int = 0) -> np.ndarray:
    """Honest updates around a common direction plus ``f`` shifted Byzantine rows, all in [-1, 1]."""
    rng = np.random.default_rng(seed)
    center = rng.normal(0.0, 0.05, size=d)
    x = center + rng.normal(0.0, 0.05, size=(n, d))
    x[n - f :] = center + 0.3
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def clip_mean(clip: float) -> Any:
    return robust.Pipeline(pre=[robust.Clip(c=clip)], rule=robust.Mean())


def cases(f: int, clip: float) -> list[tuple[str, dict[str, Any], Callable[[], Any]]]:
    return [
        ("ckks_mean", {}, lambda: robust.make("mean")),
        (
            "ckks_norm_clip",
            {"clip": clip},
            lambda: robust.Pipeline(pre=[robust.Clip(c=clip)], rule=robust.Mean()),
        ),
        ("ckks_krum", {"f": f}, lambda: robust.make("krum", f=f)),
        ("ckks_multi_krum", {"f": f}, lambda: robust.make("multi_krum", f=f)),
        ("ckks_median", {}, lambda: robust.make("median")),
        ("ckks_trimmed_mean", {"f": f}, lambda: robust.make("trimmed_mean", f=f)),
    ]


def role(party: str) -> str:
    return party.split("[")[0]


def summarize(res: RoundResult, n: int) -> dict[str, Any]:
    """Per-round figures from a meter, setup excluded."""
    costs = {k: v for k, v in res.meter.costs.items() if k[1] != "setup"}
    client_s = [sum(c.seconds for (p, _), c in costs.items() if p == f"client[{i}]") for i in range(n)]
    server_s = sum(c.seconds for (p, _), c in costs.items() if p == "server")
    kh_s = sum(c.seconds for (p, _), c in costs.items() if p == "key_holder")
    up = [sum(c.bytes_sent for (p, _), c in costs.items() if p == f"client[{i}]") for i in range(n)]
    s2k = sum(c.bytes_received for (p, _), c in costs.items() if p == "key_holder")
    k2s = sum(c.bytes_sent for (p, _), c in costs.items() if p == "key_holder")
    phases: dict[tuple[str, str], list[float]] = {}
    for (p, ph), c in costs.items():
        phases.setdefault((role(p), ph), [0.0, 0.0, 0.0])
        acc = phases[(role(p), ph)]
        scale = 1.0 / n if role(p) == "client" else 1.0
        acc[0] += c.seconds * scale
        acc[1] += c.bytes_sent * scale
        acc[2] += c.bytes_received * scale
    return {
        "client_s": statistics.median(client_s),
        "client_max_s": max(client_s),
        "server_s": server_s,
        "kh_s": kh_s,
        "total_s": sum(client_s) + server_s + kh_s,
        "critical_s": max(client_s) + server_s + kh_s,
        "upload_b": statistics.median(up),
        "s2k_b": s2k,
        "k2s_b": k2s,
        "phases": phases,
    }


def setup_figures(res: RoundResult) -> tuple[float, int]:
    costs = [c for (p, ph), c in res.meter.costs.items() if ph == "setup"]
    return sum(c.seconds for c in costs), sum(c.bytes_sent for c in costs)


def median_dicts(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in rows[0]:
        if k == "phases":
            keys = rows[0]["phases"].keys()
            out[k] = {
                key: [statistics.median(r["phases"][key][i] for r in rows) for i in range(3)] for key in keys
            }
        else:
            out[k] = statistics.median(r[k] for r in rows)
    return out


def time_plain(rule: Callable[[], Any], x: torch.Tensor, repeats: int) -> float:
    agg = rule()
    return median_seconds(lambda: agg(x), repeats)


def run_protocol(
    name: str, kw: dict[str, Any], x: np.ndarray, repeats: int
) -> tuple[dict[str, Any], float, int]:
    proto = protocols.make(name, **kw)
    rows, setup = [], (0.0, 0)
    for r in range(repeats):
        res = proto.run(torch.as_tensor(x))
        if r == 0:
            setup = setup_figures(res)
        rows.append(summarize(res, x.shape[0]))
    return median_dicts(rows), setup[0], setup[1]


def pair_costs(d: int, repeats: int) -> tuple[float, float]:
    """Median seconds per pair: chunkwise ``sq_distance`` (baseline) and the deferred evaluator."""
    import tenseal as ts

    ctx = ts.context(ts.SCHEME_TYPE.CKKS, 8192, coeff_mod_bit_sizes=[60, 40, 60], n_threads=2)
    ctx.global_scale = 2.0**40
    ctx.generate_relin_keys()
    ctx.generate_galois_keys()
    x = make_stack(2, d, 0)
    ups = [[ts.ckks_vector(ctx, c) for c in chunk_rows(r.astype(np.float64), 4096)] for r in x]
    ev = DistanceEvaluator(ctx, 2.0**40, 4096)
    raw = [ev.raw(u) for u in ups]
    old, new = interleaved(
        [lambda: sq_distance(ups[0], ups[1]).serialize(), lambda: ev.sq_distance(raw[0], raw[1])],
        repeats,
        warmup=0,
    )
    return old, new


def mb(b: float) -> str:
    return f"{b / 1e6:.2f}"


def row(name: str, plain: float, s: dict[str, Any], setup_s: float, setup_b: int) -> str:
    return (
        f"{name:<18} {plain * 1e3:>9.2f} {s['client_s']:>9.3f} {s['server_s']:>9.3f} {s['kh_s']:>9.3f} "
        f"{s['critical_s']:>10.2f} {s['total_s']:>8.2f} {s['critical_s'] / plain:>8.0f} "
        f"{mb(s['upload_b']):>9} {mb(s['s2k_b']):>8} {mb(s['k2s_b']):>8} {setup_s:>8.2f} {mb(setup_b):>8}"
    )


def phase_tables(details: dict[str, dict[str, Any]]) -> None:
    """Each protocol's seconds and bytes per (party role, phase)."""
    print()
    print("## Per party and phase (client figures are per client)")
    for name, s in details.items():
        print(f"\n{name}")
        print(f"  {'party':<11} {'phase':<10} {'seconds':>9} {'sent MB':>9} {'recv MB':>9}")
        for (r, ph), (sec, sent, recv) in s["phases"].items():
            print(f"  {r:<11} {ph:<10} {sec:>9.3f} {mb(sent):>9} {mb(recv):>9}")


def scaling_table(d: int, sizes: tuple[int, ...], workers: int) -> None:
    """ckks_multi_krum's distance phase and critical path at n in ``sizes`` (one round each)."""
    print()
    print(f"## ckks_multi_krum scaling with n (d = {d:,}, f = n // 5; one round each)")
    head = (
        f"{'n':>4} {'pairs':>6} {'distances s':>12} {'per pair ms':>12} {'critical s':>11} {'total s':>8} "
        f"{'plain ms':>9} {'S->K MB':>8}"
    )
    print(head)
    print("-" * len(head))
    for nn in sizes:
        ff = max(1, nn // 5)
        xs = make_stack(nn, d, ff, seed=nn)
        plain = time_plain(functools.partial(robust.make, "multi_krum", f=ff), torch.as_tensor(xs), 3)
        s, _, _ = run_protocol("ckks_multi_krum", {"f": ff, "workers": workers}, xs, 1)
        pairs = nn * (nn - 1) // 2
        dist_s = s["phases"][("server", "distances")][0]
        print(
            f"{nn:>4} {pairs:>6} {dist_s:>12.2f} {dist_s / pairs * 1e3:>12.1f} {s['critical_s']:>11.2f} "
            f"{s['total_s']:>8.2f} {plain * 1e3:>9.2f} {mb(s['s2k_b']):>8}",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="n = 7, d = 5,000, one repeat, small scaling")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--paillier-d", type=int, default=None)
    ap.add_argument("--skip-scaling", action="store_true")
    ap.add_argument("--only", nargs="*", default=None, help="protocol names to run")
    ap.add_argument("--workers", type=int, default=1, help="server processes for the Krum distances")
    ap.add_argument("--pair-repeats", type=int, default=15, help="runs per method in the per-pair table")
    args = ap.parse_args()
    n, d, f = (7, 5_000, 1) if args.quick else (N, D, F)
    repeats = args.repeats or (1 if args.quick else 3)
    pd = args.paillier_d or (64 if args.quick else 1_024)
    scaling = (5, 7, 9) if args.quick else (10, 25, 50)
    torch.set_num_threads(2)

    x = make_stack(n, d, f)
    xt = torch.as_tensor(x)
    print(f"# HE protocols: n = {n}, d = {d:,}, f = {f}; medians over {repeats} round(s)")
    print("# CKKS N = 8192, [60, 40, 60], scale 2^40; Paillier 2048-bit keys, 32-bit fixed-point ring")
    print()
    head = (
        f"{'protocol':<18} {'plain ms':>9} {'client s':>9} {'server s':>9} {'keyhold s':>9} "
        f"{'critical s':>10} {'total s':>8} {'ratio':>8} {'up MB/cl':>9} {'S->K MB':>8} {'K->S MB':>8} "
        f"{'setup s':>8} {'setup MB':>8}"
    )
    old, new = pair_costs(d, args.pair_repeats)
    print(
        f"## E(||x_i - x_j||^2) per pair, d = {d:,} ({-(-d // 4096)} chunks), alternated, medians of "
        f"{args.pair_repeats}"
    )
    print(f"chunkwise relin+rescale (baseline) {old * 1e3:8.1f} ms")
    print(f"deferred, once per pair (used)     {new * 1e3:8.1f} ms   ({old / new:.2f}x faster)")
    print()
    print(head)
    print("-" * len(head))
    details = {}
    for name, kw, rule in cases(f, CLIP):
        if args.only and name not in args.only:
            continue
        if "krum" in name:
            kw = {**kw, "workers": args.workers}
        plain = time_plain(rule, xt, max(repeats, 5))
        s, setup_s, setup_b = run_protocol(name, kw, x, repeats)
        details[name] = s
        print(row(name, plain, s, setup_s, setup_b), flush=True)
    if not args.only or "paillier_mean" in args.only:
        plain = time_plain(lambda: robust.make("mean"), torch.as_tensor(x[:, :pd]), max(repeats, 5))
        s, setup_s, setup_b = run_protocol("paillier_mean", {}, x[:, :pd], repeats)
        details["paillier_mean"] = s
        k = d / pd
        print(row("paillier_mean", plain, s, setup_s, setup_b) + f"   (d = {pd:,})")
        print(
            f"{'  ~ at d=' + format(d, ','):<18} {'':>9} {s['client_s'] * k:>9.1f} {s['server_s'] * k:>9.1f} "
            f"{s['kh_s'] * k:>9.1f} {s['critical_s'] * k:>10.1f} {s['total_s'] * k:>8.1f} {'':>8} "
            f"{mb(s['upload_b'] * k):>9} {mb(s['s2k_b'] * k):>8} {mb(s['k2s_b'] * k):>8}"
            "   (linear extrapolation)"
        )
    print()
    print("plain ms: the plaintext rule on the same stack (torch, 2 threads); ratio = critical s / plain s.")
    print("client s: median client; critical = slowest client + server + key holder; total = all parties.")
    phase_tables(details)
    if not args.skip_scaling:
        scaling_table(d, scaling, args.workers)


if __name__ == "__main__":
    main()
