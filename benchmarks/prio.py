"""Cost of PINE on Prio3's FLP (secagg.vdaf) for the two-server mechanism, at d = 1,000, 10,000, 61,706.

For each d, with B = 1, f = 15, r = 100 wraparound checks and 3 proofs in Field64 (draft-20's rule
with joint randomness): the client's encode + prove + shard time, each server's verify time for one
report (expand, wraparound dot products, FLP query; the leader's time includes the decision),
medians over repeats; the bytes one client uploads (both reports, public share sent to each server) and
its ratio to the plain d * 8 bytes of a float64 update; the leader-helper traffic per report (the
helper's verifier share, the leader's verdict and the helper's acknowledgement). With ``--round N`` a
full round of N clients through ``protocols.prio`` at the largest d is timed as well, and with
``--gram M`` the distance computation on shares for M accepted clients (secagg.vdaf.gram: the dealer's
correlation, one server's Gram share) and the bytes each server sends for it.

For comparison, the issue measured the elliptic-curve norm proof (secagg.normbound, benchmarks/proofs.py)
at 1,318 s per client at d = 61,706, and the draft's pure-Python reference Prio3SumVec with 1-bit
entries at 11.0 s to shard and 2.2-2.6 s to verify per server.

Other processes may share the two CPU cores: medians over repeats damp that, not fully.
The full round reports CPU seconds too: at 100 clients and d = 61,706 it measured 17.4 s of CPU
(median of 3; about 76 ms client, 44 ms per server per report) while the wall time ranged 49-101 s
with a load average near 11 on the two cores: the wall time above 60 s is the other processes.

Usage: python benchmarks/prio.py [--dims 1000 10000 61706] [--repeats 3] [--round 0] [--round-repeats 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import _bench  # noqa: F401
import nacl.utils
import numpy as np

from protocols.prio import NONCE, PUBLIC, PrioPine
from secagg.vdaf.field import Field64
from secagg.vdaf.gram import deal_square, gram_share, masked_share
from secagg.vdaf.pine import PineParams
from secagg.vdaf.pine_vdaf import Pine


def _update(d: int, seed: int) -> list[float]:
    v = np.random.default_rng(seed).normal(size=d)
    return list(v / np.linalg.norm(v) * 0.95)


def measure(d: int, repeats: int) -> dict[str, float]:
    pine = Pine(PineParams(d, 1.0, 15, 100), proofs=3)
    key, ctx = nacl.utils.random(32), b"bench"
    shard_s, lead_s, help_s = [], [], []
    traffic = 0
    for r in range(repeats):
        x, nonce = _update(d, r), nacl.utils.random(16)
        t0 = time.perf_counter()
        public, shares = pine.shard(ctx, x, nonce, nacl.utils.random(pine.RAND_SIZE))
        t1 = time.perf_counter()
        s1, v1 = pine.verify_init(key, ctx, 1, nonce, public, shares[1])
        t2 = time.perf_counter()
        s0, v0 = pine.verify_init(key, ctx, 0, nonce, public, shares[0])
        msg = pine.verifier_shares_to_message(
            ctx, [v0, pine.decode_verifier_share(pine.encode_verifier_share(v1))]
        )
        pine.verify_next(s0, msg)
        t3 = time.perf_counter()
        pine.verify_next(s1, msg)
        t4 = time.perf_counter()
        shard_s.append(t1 - t0)
        help_s.append(t2 - t1 + t4 - t3)
        lead_s.append(t3 - t2)
        traffic = 4 + len(pine.encode_verifier_share(v1)) + 5 + len(msg) + 1
    upload = pine.upload_bytes() + 2 * NONCE + PUBLIC
    return {
        "d": d,
        "chunk": pine.valid.chunk_length,
        "shard_s": statistics.median(shard_s),
        "leader_s": statistics.median(lead_s),
        "helper_s": statistics.median(help_s),
        "upload_B": upload,
        "ratio": upload / (8 * d),
        "traffic_B": traffic,
    }


def gram(m: int, d: int) -> None:
    f = Field64
    x = f.arr(np.random.default_rng(0).integers(-(2**15), 2**15, size=(m, d)))
    t0 = time.perf_counter()
    corr, _ = deal_square(f, m, d)
    t1 = time.perf_counter()
    e = masked_share(f, x, corr)
    gram_share(f, 0, e, corr)
    t2 = time.perf_counter()
    sent = 8 * (m * d + m * m)
    print(
        f"Gram on shares, {m} clients at d = {d}: dealer {t1 - t0:.1f} s, leader {t2 - t1:.1f} s, "
        f"each server sends {sent:,} B (E and its Gram share)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dims", type=int, nargs="+", default=[1000, 10000, 61706])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--round", type=int, default=0, help="clients in a full round at the largest d (0: skip)")
    ap.add_argument("--round-repeats", type=int, default=1, help="full rounds timed (median)")
    ap.add_argument(
        "--gram", type=int, default=0, help="clients in the Gram on shares at the largest d (0: skip)"
    )
    args = ap.parse_args()
    print("PINE on draft-20 Prio3 FLP: B = 1, f = 15, r = 100, Field64, 3 proofs (medians)")
    cols = [("d", 7), ("chunk", 5), ("client s", 9), ("leader s", 9), ("helper s", 9), ("upload B", 10)]
    print(" ".join(f"{c:>{w}}" for c, w in [*cols, ("x plain", 8), ("L<->H B", 8)]))
    for d in args.dims:
        m = measure(d, args.repeats)
        print(
            f"{m['d']:>7} {m['chunk']:>5} {m['shard_s']:>9.3f} {m['leader_s']:>9.3f} {m['helper_s']:>9.3f}"
            f" {m['upload_B']:>10,} {m['ratio']:>8.4f} {m['traffic_B']:>8,}"
        )
    print("targets at d = 61,706: client <= 0.5 s, server <= 0.3 s, upload <= 1.06x, L<->H <= 6 KB")
    if args.gram:
        gram(args.gram, max(args.dims))
    if args.round:
        full_round(args.round, max(args.dims), args.round_repeats)


def full_round(n: int, d: int, repeats: int) -> None:
    """Median wall and CPU seconds of a full round (CPU: this process, all threads; under contention
    from other processes the wall time grows and the CPU time much less)."""
    x = np.stack([_update(d, 100 + i) for i in range(n)])
    proto = PrioPine()
    walls, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        res = proto.run(x)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    cost = res.meter
    print(
        f"full round, {n} clients at d = {d}, median of {repeats}: {statistics.median(walls):.1f} s wall, "
        f"{statistics.median(cpus):.1f} s CPU (last round: clients {cost.total('client').seconds:.1f} s, "
        f"leader {cost.total('leader').seconds:.1f} s, helper {cost.total('helper').seconds:.1f} s), "
        f"accepted {len(res.accepted)}; target <= 60 s"
    )


if __name__ == "__main__":
    main()
