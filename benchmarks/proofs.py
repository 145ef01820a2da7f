"""Cost of the norm-bound proofs (secagg.normbound) at d = 1,000, 10,000 and 61,706 (LeNet-5).

For each d: generator derivation (once per process, cached), commit, prove and verify wall seconds
(medians over repeats), proof bytes, the prover's number of Ed25519 scalar multiplications and its floor
(that count times the median time of one ``crypto_scalarmult_ed25519_noclamp`` measured in this run),
and one client's masking step (its ``masked_input`` phase in an in-process Bonawitz round with n = 10
clients at the same d, from secagg.driver) as the baseline a proof is compared with.

Parameters follow the protocol's defaults: bound 1.0, clip 1.0, frac_bits 8, so b = 10 entry bits and
B = 2^16 (16 + 1 slack bits); the inner-product vectors have length n = d (b + 1) + 17.

Other processes may share the two CPU cores: medians over repeats damp that, not fully; the largest size
sizes above d = 2,000 run ``--big-repeats`` times (1 by default): one proof at d = 61,706 takes tens
of minutes.

Usage: python benchmarks/proofs.py [--dims 1000 10000 61706] [--repeats 3] [--big-repeats 1]
"""

# ruff: noqa: E402

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

# Run as a script, this folder comes first on sys.path, where benchmarks/secagg.py would shadow the
# secagg package: drop it.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]

import nacl.bindings as nb
import numpy as np

from protocols.base import Meter
from protocols.secagg_normbound import NormBoundConfig, encode_within_bound
from secagg.driver import run_round
from secagg.normbound import ProofContext, normproof, verify
from secagg.normbound import generators as gg
from secagg.normbound.group import random_scalar


def _median_time(fn: object, repeats: int) -> float:
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def scalar_mult_seconds(batches: int = 9, per_batch: int = 200) -> tuple[float, float]:
    """Median seconds of one scalar multiplication and of one point addition."""
    p = gg.generator("bench", "P", 0)
    q = gg.generator("bench", "P", 1)
    ks = [random_scalar().to_bytes(32, "little") for _ in range(per_batch)]

    def smuls() -> None:
        for k in ks:
            nb.crypto_scalarmult_ed25519_noclamp(k, p)

    def adds() -> None:
        for _ in range(per_batch):
            nb.crypto_core_ed25519_add(p, q)

    return _median_time(smuls, batches) / per_batch, _median_time(adds, batches) / per_batch


def masking_seconds(d: int, n: int = 10, repeats: int = 3) -> float:
    """Median seconds of client 0's masked-input step in a Bonawitz round of n clients."""
    bits = 32
    inputs = np.random.default_rng(0).integers(0, 2**bits, size=(n, d), dtype=np.uint64)
    ts = []
    for _ in range(repeats):
        meter = Meter()
        run_round(inputs, t=n // 2 + 1, bits=bits, meter=meter)
        ts.append(meter.costs[("client[0]", "masked_input")].seconds)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dims", type=int, nargs="+", default=[1000, 10_000, 61_706])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--big-repeats", type=int, default=1, help="repeats for d > 2,000")
    ap.add_argument(
        "--max-prove-d",
        type=int,
        default=10**9,
        help="above this d, only commit, sizes, counts and the floor are measured (prove/verify not run)",
    )
    args = ap.parse_args()

    cfg = NormBoundConfig(bound=1.0)
    t_smul, t_add = scalar_mult_seconds()
    print(
        f"one scalar multiplication (noclamp): {t_smul * 1e6:.0f} us; "
        f"one point addition: {t_add * 1e6:.0f} us (at start; the floor uses timings taken around each proof)"
    )
    print("medians over repeats; other processes may share the CPU", flush=True)
    header = (
        f"{'d':>7} {'b':>3} {'n':>8} {'setup s':>8} {'commit s':>9} {'prove s':>9} {'verify s':>9} "
        f"{'bytes':>6} {'prove smul':>10} {'smul us':>7} {'floor s':>8} {'prove/floor':>11} "
        f"{'verify/prove':>12} {'mask s':>7} {'prove/mask':>10} {'reps':>4}"
    )
    rows = []
    for d in args.dims:
        params = cfg.params(d)
        count = params.scalar_mults()["prove"]
        reps = args.repeats if d <= 2_000 else args.big_repeats
        rng = np.random.default_rng(d)
        u = rng.normal(size=d)
        u *= 0.9 / np.linalg.norm(u)
        q = encode_within_bound(cfg, u, 10)
        normproof.check_witness(params, q)
        ctx = ProofContext(b"benchmark", 0, 0)
        mask = masking_seconds(d)
        commit_t, prove_t, verify_t, smul_t = [], [], [], []
        size = params.proof_size
        run_proofs = d <= args.max_prove_d
        t0 = time.perf_counter()
        if run_proofs:
            normproof._gens(params)
        else:
            _ = params.key.G
        setup = time.perf_counter() - t0
        for _ in range(reps):
            r = random_scalar()
            t0 = time.perf_counter()
            C = params.key.commit(q, r)
            commit_t.append(time.perf_counter() - t0)
            smul_t.append(scalar_mult_seconds(batches=3, per_batch=100)[0])
            if not run_proofs:
                continue
            t0 = time.perf_counter()
            proof = normproof._prove_unchecked(params, q, r, C, ctx)  # q was checked above
            prove_t.append(time.perf_counter() - t0)
            smul_t.append(scalar_mult_seconds(batches=3, per_batch=100)[0])
            data = proof.to_bytes()
            assert len(data) == size
            t0 = time.perf_counter()
            verify(params, C, data, ctx)
            verify_t.append(time.perf_counter() - t0)
        ts = statistics.median(smul_t)
        floor = count * ts
        cm = statistics.median(commit_t)
        if run_proofs:
            pm, vm = statistics.median(prove_t), statistics.median(verify_t)
            timing = (
                f"{pm:>9.2f} {vm:>9.2f} {size:>6} {count:>10} {ts * 1e6:>7.0f} {floor:>8.2f} "
                f"{pm / floor:>11.2f} {vm / pm:>12.2f} {mask:>7.4f} {pm / mask:>10.0f}"
            )
        else:
            timing = (
                f"{'not run':>9} {'not run':>9} {size:>6} {count:>10} {ts * 1e6:>7.0f} {floor:>8.2f} "
                f"{'-':>11} {'-':>12} {mask:>7.4f} {floor / mask:>9.0f}*"
            )
        row = f"{d:>7} {params.entry_bits:>3} {params.n:>8} {setup:>8.1f} {cm:>9.3f} {timing} {reps:>4}"
        rows.append(row)
        if len(rows) == 1:
            print(header)
        print(row, flush=True)
    print()
    print(header)
    for row in rows:
        print(row)
    if any(d > args.max_prove_d for d in args.dims):
        print("* prove/verify not run at this size: floor s = scalar multiplications x measured time, and")
        print("  prove/mask uses the floor (measured prove/floor above is the expected multiple).")


if __name__ == "__main__":
    main()
