"""Cost of the norm-bound proofs (secagg.normbound) at d = 1,000, 10,000 and 61,706 (LeNet-5).

For each d and construction (projection checks, the default; ``--exact`` adds the per-entry range proof):
generator setup cold (derived and written to an empty disk cache) and warm (loaded from it), commit,
prove, verify and the batched verification of 25 proofs (one MSM; the same proof 25 times under
independent random weights costs exactly what 25 distinct proofs cost), wall seconds (medians over
repeats), proof bytes and soundness error. Each figure stands beside its floor: the number of Ed25519
scalar multiplications it makes times the median time of one ``crypto_scalarmult_ed25519_noclamp``
measured in this run (the floor of one process: with ``--workers`` w > 1 a proof can go below it, down
to about floor / w on w idle cores). One client's masking step (``masked_input`` in an in-process
Bonawitz round with n = 10 clients, secagg.driver) is the baseline a proof is compared with.

Parameters follow the protocol's defaults: bound 1.0, clip 1.0, frac_bits 8, so b = 10 entry bits and
B = 2^16 (16 + 1 slack bits); n = d + K bp + 17 (projections, K = 80, bp = bitlen(2 isqrt(d B))) or
n = d (b + 1) + 17 (exact).

Other processes may share the CPU cores: medians over repeats damp that, not fully. Each row prints the
1-minute load average taken right after it, and the prover's CPU seconds in the calling process and in
its pool ("cpu main/pool": on w idle cores a proof takes about main + pool / w). Sizes above d = 2,000
run ``--big-repeats`` times (1 by default; ``--repeats`` given alone sets both).

Usage: python benchmarks/proofs.py [--d 1000 10000 61706] [--repeats 3] [--big-repeats 1] [--workers 2]
       [--exact] [--no-mask]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import statistics
import tempfile
import time

import nacl.bindings as nb
import numpy as np
from _bench import median_seconds

from protocols.base import Meter
from protocols.secagg_normbound import NormBoundConfig, encode_within_bound
from secagg.driver import run_round
from secagg.normbound import NormBoundParams, ProofContext, normproof, projection, verify, verify_batch
from secagg.normbound import generators as gg
from secagg.normbound.group import random_scalar
from secagg.normbound.parallel import default_workers


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

    smul_s, add_s = (median_seconds(fn, batches, warmup=0) / per_batch for fn in (smuls, adds))
    return smul_s, add_s


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


def setup_seconds(params: NormBoundParams) -> tuple[float, float]:
    """Generator setup with an empty disk cache (cold) and then from it (warm)."""
    old = os.environ.get("FEDSEC_NORMBOUND_CACHE")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["FEDSEC_NORMBOUND_CACHE"] = tmp
        try:
            out = []
            for _ in range(2):
                gg.clear_memory_cache()
                t0 = time.perf_counter()
                normproof._gens(params)
                out.append(time.perf_counter() - t0)
        finally:
            if old is None:
                del os.environ["FEDSEC_NORMBOUND_CACHE"]
            else:
                os.environ["FEDSEC_NORMBOUND_CACHE"] = old
    return out[0], out[1]


def _cpu() -> tuple[float, float]:
    """CPU seconds of this process and of its finished children (a proof's pool ends with the proof)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def measure(params: NormBoundParams, q: np.ndarray, reps: int, batch: int, workers: int) -> dict[str, float]:
    """Median prove, verify and batched-verify seconds (``workers`` processes each), the prover's CPU
    seconds in the calling process and in its pool, and the scalar-multiplication time around them."""
    ctx = ProofContext(b"benchmark", 0, 0)
    prove_t, verify_t, batch_t, smul_t, cpu_main, cpu_pool = [], [], [], [], [], []
    for _ in range(reps):
        r = random_scalar()
        C = params.key.commit(q, r)
        smul_t.append(scalar_mult_seconds(batches=3, per_batch=100)[0])
        c0, t0 = _cpu(), time.perf_counter()
        proof = normproof._prove_unchecked(params, q, r, C, ctx, workers=workers)  # q checked by the caller
        prove_t.append(time.perf_counter() - t0)
        c1 = _cpu()
        cpu_main.append(c1[0] - c0[0])
        cpu_pool.append(c1[1] - c0[1])
        data = proof.to_bytes()
        assert len(data) == params.proof_size
        t0 = time.perf_counter()
        verify(params, C, data, ctx, workers=workers)
        verify_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        assert verify_batch(params, [(C, data, ctx)] * batch, workers=workers) == [None] * batch
        batch_t.append(time.perf_counter() - t0)
        smul_t.append(scalar_mult_seconds(batches=3, per_batch=100)[0])
    med = statistics.median
    return {
        "prove": med(prove_t),
        "verify": med(verify_t),
        "batch": med(batch_t),
        "smul": med(smul_t),
        "cpu_main": med(cpu_main),
        "cpu_pool": med(cpu_pool),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d", "--dims", dest="dims", type=int, nargs="+", default=[1000, 10_000, 61_706])
    ap.add_argument("--repeats", type=int, default=None, help="repeats (default 3; for every d if alone)")
    ap.add_argument("--big-repeats", type=int, default=None, help="repeats for d > 2,000 (default 1)")
    ap.add_argument("--workers", type=int, default=default_workers(), help="processes per proof")
    ap.add_argument("--batch", type=int, default=25, help="proofs in the batched verification")
    ap.add_argument("--exact", action="store_true", help="also run the per-entry construction")
    ap.add_argument("--no-mask", action="store_true", help="skip the masking baseline")
    args = ap.parse_args()
    if args.big_repeats is None:
        args.big_repeats = 1 if args.repeats is None else args.repeats
    if args.repeats is None:
        args.repeats = 3

    cfg = NormBoundConfig(bound=1.0)
    t_smul, t_add = scalar_mult_seconds()
    print(
        f"one scalar multiplication (noclamp): {t_smul * 1e6:.0f} us; one point addition: "
        f"{t_add * 1e6:.0f} us (at start; each floor uses timings taken around its proofs)"
    )
    print(
        f"medians over repeats; {args.workers} worker process(es) per proof on {os.cpu_count()} cores; "
        "floor = scalar mults x smul time (one process); load = 1-minute load average after the row"
    )
    header = (
        f"{'d':>7} {'mode':>5} {'n':>7} {'setup cold':>10} {'warm':>6} {'prove s':>8} {'floor':>7} "
        f"{'cpu main/pool':>13} "
        f"{'verify s':>8} {'floor':>7} {f'batch{args.batch} s':>9} {'floor':>7} {'bytes':>5} "
        f"{'soundness':>9} {'mask s':>7} {'reps':>4} {'load':>5}"
    )
    print(header, flush=True)
    rows = []
    for d in args.dims:
        base = cfg.params(d)
        u = np.random.default_rng(d).normal(size=d)
        q = encode_within_bound(cfg, u * 0.9 / np.linalg.norm(u), 10)
        mask = 0.0 if args.no_mask else masking_seconds(d)
        for exact in [False, True] if args.exact else [False]:
            params = dataclasses.replace(base, exact=exact)
            normproof.check_witness(params, q)
            cold, warm = setup_seconds(params)
            reps = args.repeats if d <= 2_000 else args.big_repeats
            m = measure(params, q, reps, args.batch, args.workers)
            cnt = params.scalar_mults()
            k = params.n.bit_length()
            batch_count = 2 * params.n + args.batch * (2 * k + 10)
            err = "exact" if exact else f"2^-{params.checks}"
            ts = m["smul"]
            mask_s = "-" if args.no_mask else f"{mask:.3f}"
            cpu = f"{m['cpu_main']:.1f}/{m['cpu_pool']:.1f}"
            row = (
                f"{d:>7} {'exact' if exact else 'proj':>5} {params.n:>7} {cold:>10.1f} {warm:>6.2f} "
                f"{m['prove']:>8.2f} {cnt['prove'] * ts:>7.2f} {cpu:>13} "
                f"{m['verify']:>8.2f} {cnt['verify'] * ts:>7.2f} "
                f"{m['batch']:>9.2f} {batch_count * ts:>7.2f} {params.proof_size:>5} {err:>9} {mask_s:>7} "
                f"{reps:>4} {os.getloadavg()[0]:>5.1f}"
            )
            rows.append(row)
            print(row, flush=True)
    print()
    print(header)
    for row in rows:
        print(row)
    print(f"(projection soundness: {projection.soundness_error(80):.1e} per proof at K = 80)")


if __name__ == "__main__":
    main()
