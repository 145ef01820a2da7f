"""Time every attack at the stress-testing paper's runtime setting (n = 25, f = 5, d = 500,000 float32).

Prints, per attack, the median wall time over repeats and its ratio to two baselines measured in the
same run: ``own.mean(0)`` (the cheapest statistic an attacker computes, over its f rows) and
``stack.mean(0)`` (the plain mean of the whole round, the aggregator benchmark's reference). Other jobs
may share the CPU: medians over repeats absorb most of that noise, not all.

    python benchmarks/attacks.py [--d 500000] [--repeats 7] [--calibrated-repeats 3]
"""

from __future__ import annotations

import argparse

import torch
from _bench import median_seconds

from robust import attacks as A


def _coordinate_median(stack: torch.Tensor) -> torch.Tensor:
    return stack.median(dim=0).values


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=25)
    ap.add_argument("--f", type=int, default=5)
    ap.add_argument("--d", type=int, default=500_000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--calibrated-repeats", type=int, default=3)
    args = ap.parse_args()
    n, f, d = args.n, args.f, args.d

    g = torch.Generator().manual_seed(0)
    stack = torch.randn(n, d, generator=g)
    own, honest = stack[:f].contiguous(), stack[f:].contiguous()
    ctx = A.AttackContext(n=n, f=f, rule=_coordinate_median, generator=torch.Generator().manual_seed(1))

    base_own = median_seconds(lambda: own.mean(0), args.repeats)
    base_stack = median_seconds(lambda: stack.mean(0), args.repeats)

    cases: list[tuple[str, A.Attack, int]] = [
        ("none", A.NoAttack(), args.repeats),
        ("alie (z_max)", A.ALIE(), args.repeats),
        ("alie omniscient", A.ALIE(z=8.0, omniscient=True), args.repeats),
        ("ipm", A.IPM(eps=2.5), args.repeats),
        ("sign_flip", A.SignFlip(), args.repeats),
        ("gaussian", A.Gaussian(sigma=1.0), args.repeats),
        ("scaling", A.Scaling(), args.repeats),
        ("large_norm", A.LargeNorm(), args.repeats),
        ("non_finite", A.NonFinite(), args.repeats),
        ("mimic (heuristic)", A.Mimic(), args.repeats),
        ("min_max unit", A.MinMax(p="unit"), args.repeats),
        ("min_max std omniscient", A.MinMax(p="std", omniscient=True), args.repeats),
        ("min_sum sign", A.MinSum(p="sign"), args.repeats),
        ("min_sum std omniscient", A.MinSum(p="std", omniscient=True), args.repeats),
        ("calibrated alie vs median", A.Calibrated("alie"), args.calibrated_repeats),
        ("calibrated ipm vs median, grid only", A.Calibrated("ipm", refine=0), args.calibrated_repeats),
    ]
    rule_time = median_seconds(lambda: _coordinate_median(stack), args.calibrated_repeats)

    print(f"attacks: n={n}, f={f}, d={d:,} float32, CPU threads={torch.get_num_threads()}; median of repeats")
    print(f"{'attack':<38}{'median ms':>11}{'x own.mean':>12}{'x stack.mean':>14}")
    print(f"{'baseline own.mean(0)':<38}{base_own * 1e3:>11.2f}{1.0:>12.1f}{base_own / base_stack:>14.2f}")
    print(
        f"{'baseline stack.mean(0)':<38}{base_stack * 1e3:>11.2f}{base_stack / base_own:>12.1f}{1.0:>14.2f}"
    )
    print(
        f"{'(rule) coordinate median of stack':<38}{rule_time * 1e3:>11.2f}"
        f"{rule_time / base_own:>12.1f}{rule_time / base_stack:>14.2f}"
    )
    for label, atk, reps in cases:
        h = honest if atk.omniscient else None

        def call(atk: A.Attack = atk, h: torch.Tensor | None = h) -> torch.Tensor:
            return atk(own, h, ctx=ctx)

        t = median_seconds(call, reps)
        print(f"{label:<38}{t * 1e3:>11.2f}{t / base_own:>12.1f}{t / base_stack:>14.2f}")
        if isinstance(atk, A.Calibrated):
            evals = len(atk.last_trace)
            print(f"{'  (rule evaluations per call)':<38}{evals:>11d}")


if __name__ == "__main__":
    main()
