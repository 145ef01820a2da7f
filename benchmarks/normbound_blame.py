"""Benchmark of the identifiable abort of ``secagg_normbound``: an honest round against rounds with one
cheating client.

The blame steps run on what the masking round and the commitments leave behind; the norm-bound proofs
(the dominant cost of a round, unchanged here and measured by ``benchmarks/proofs.py``) are left out so
that the rows isolate the masking, the link check and the blame steps: each client commits to its
encoded update (Pedersen, no proof), the masking round runs over bytes in-process, the server runs the
link check and, when it fails, :func:`protocols.normbound_blame.blame_round`.

Rows per (n, d): ``honest``; ``other vector`` (client 1 masks its update + 1 instead of the committed
one; its per-client check names it: blame_commit + blame_prove); ``false pads`` (it also hides that
behind a false pad commitment; a pair dispute names it: blame_pairs as well). Columns, medians over
repeats: masking s (wall seconds of the masking round, all parties), link s, blame s (wall seconds of
the blame steps, all parties), the seconds of each blame phase (all parties, from the meter), blame kB
(every client's blame messages) and masked kB (every client's masked inputs), for scale.

Usage: ``python benchmarks/normbound_blame.py [--n 10] [--dims 1000 10000] [--repeats 3]``.
Other processes may share the CPU: timings are medians over repeats.
"""

from __future__ import annotations

import argparse
import statistics
import time

import _bench  # noqa: F401
import numpy as np

from protocols import _secure_sum as ss
from protocols import normbound_blame as nb
from protocols.base import Meter
from protocols.secagg_normbound import (
    NormBoundConfig,
    blinding_from_limb_sums,
    blinding_limbs,
    encode_within_bound,
)
from secagg.driver import run_round
from secagg.normbound import combine
from secagg.normbound.group import random_scalar

PHASES = ("blame_commit", "blame_prove", "blame_pairs")


def _round(cfg: NormBoundConfig, x: np.ndarray, case: str) -> dict[str, float]:
    n, d = x.shape
    key, fp, w = cfg.params(d).key, cfg.encoding, cfg.limb_bits(n)
    q = [encode_within_bound(cfg, x[i], n) for i in range(n)]
    r = [random_scalar() for _ in range(n)]
    C = {i: key.commit(q[i], r[i]) for i in range(n)}
    masked = [qi.copy() for qi in q]
    if case != "honest":
        masked[1] = masked[1] + 1
    ring = np.stack(
        [np.concatenate([mq.astype(np.uint64) & fp.mask, blinding_limbs(ri, w)]) for mq, ri in zip(masked, r)]
    )
    plan = ss.complete_plan(n, None, cfg.active, ss.DEFAULT_CORRUPT)
    meter, session = Meter(), bytes(16)
    t0 = time.perf_counter()
    out = run_round(ring, t=plan.t, corrupt=plan.corrupt, bits=cfg.bits, meter=meter, session=session)
    t1 = time.perf_counter()
    q_sum = fp.to_signed(out.sum)[:d]
    ok = combine(list(C.values())) == key.commit(q_sum, blinding_from_limb_sums(out.sum[d:], w))
    t2 = time.perf_counter()
    if ok != (case == "honest"):
        raise RuntimeError(f"{case}: got link check {ok}; want {case == 'honest'}")
    if not ok:
        ints = {
            i: np.concatenate([masked[i].astype(object), blinding_limbs(r[i], w).astype(object)])
            for i in range(n)
        }
        lies = {1: key.commit(masked[1] - q[1], 0)} if case == "false pads" else {}
        res = nb.blame_round(
            out, nb.RingLayout(key, d, cfg.bits, w, session), C, ints, meter, lambda j: f"client[{j}]", lies
        )
        if (
            sorted(res.blamed) != [1]
            or res.total.tolist() != np.sum([q[i] for i in res.kept], axis=0).tolist()
        ):
            raise RuntimeError(f"{case}: got blamed {sorted(res.blamed)}; want [1] and the honest sum")
    t3 = time.perf_counter()
    row = {"masking s": t1 - t0, "link s": t2 - t1, "blame s": t3 - t2}
    for ph in PHASES:
        row[ph] = meter.total(phase=ph).seconds
    row["blame kB"] = sum(meter.total("client", ph).bytes_sent for ph in PHASES) / 1e3
    row["masked kB"] = meter.total("client", "masked_input").bytes_sent / 1e3
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--dims", type=int, nargs="+", default=[1000])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    cols = ["masking s", "link s", "blame s", *PHASES, "blame kB", "masked kB"]
    print(f"| n | d | case | {' | '.join(cols)} |")
    print("|" + "---|" * (3 + len(cols)))
    for d in args.dims:
        g = np.random.default_rng(d)
        x = g.normal(size=(args.n, d))
        x *= 0.5 / np.linalg.norm(x, axis=1, keepdims=True)
        cfg = NormBoundConfig(bound=1.0)
        for case in ("honest", "other vector", "false pads"):
            rows = [_round(cfg, x, case) for _ in range(args.repeats)]
            med = {c: statistics.median(r[c] for r in rows) for c in cols}
            cells = " | ".join(f"{med[c]:.2f}" for c in cols)
            print(f"| {args.n} | {d} | {case} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
