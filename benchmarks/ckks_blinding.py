"""Cost of the order statistics' blinding: the affine map in use against a monotone cubic that reveals less.

``ckks_median`` / ``ckks_trimmed_mean`` blind every coordinate with ``y = a x + b`` (depth 1; the key
holder learns ranks and every gap ratio). A random monotone cubic ``y = a x + c x^3 + b`` (``a, c > 0``)
keeps the ranks but not the gap ratios, and one colluding client plus the aggregate no longer solve
the map (three unknowns per coordinate). It needs depth 2: ``(c x) * x^2``, i.e. ``coeff_mod_bit_sizes
= (60, 40, 40, 60)`` at N = 8192 (200 bits, within the 218 of 128-bit security).

Per ciphertext (N/2 = 4096 coordinates of one client), medians of ``--repeats`` runs: the server's
blinding, the key holder's decryption, and the ciphertext size sent to the key holder. The round costs
``n * ceil(d / 4096)`` of each (400 at n = 25, d = 61,706).

Usage: python benchmarks/ckks_blinding.py [--repeats 9]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np
import tenseal as ts
from _bench import median_seconds


def context(sizes: list[int]) -> Any:
    ctx = ts.context(ts.SCHEME_TYPE.CKKS, 8192, coeff_mod_bit_sizes=sizes)
    ctx.global_scale = 2.0**40
    ctx.generate_relin_keys()
    return ctx


def median_ms(fn: Callable[[], Any], repeats: int) -> float:
    return 1e3 * median_seconds(fn, repeats, warmup=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args()
    rng = np.random.default_rng(0)  # benchmark data and masks only, never a protocol secret
    x = rng.uniform(-1, 1, 4096)
    a = np.exp2(8 * rng.uniform(size=4096))
    c = np.exp2(8 * rng.uniform(size=4096))
    b = a * (2 * rng.uniform(size=4096) - 1)

    ctx1 = context([60, 40, 60])
    ct1 = ts.ckks_vector(ctx1, x)

    def affine() -> Any:
        y = ct1.mul(a.tolist())
        y.add_(b.tolist())
        return y

    ctx2 = context([60, 40, 40, 60])
    ct2 = ts.ckks_vector(ctx2, x)

    def cubic() -> Any:
        y = ct2.mul(c.tolist()).mul(ct2.square())  # c x^3 at depth 2
        y.add_(ct2.mul(a.tolist()))
        y.add_(b.tolist())
        return y

    rows = []
    for name, fn in (("affine a x + b (in use)", affine), ("cubic a x + c x^3 + b", cubic)):
        y = fn()
        got = np.asarray(y.decrypt())
        want = a * x + b if fn is affine else a * x + c * x**3 + b
        err = float(np.abs(got - want).max())
        rows.append(
            (name, median_ms(fn, args.repeats), median_ms(y.decrypt, args.repeats), len(y.serialize()), err)
        )
    print(f"# blinding one ciphertext (4096 coordinates), N = 8192, medians of {args.repeats}")
    print(f"{'blinding':26s} {'server ms':>10s} {'decrypt ms':>11s} {'bytes':>9s} {'max err':>9s}")
    for name, s_ms, d_ms, size, err in rows:
        print(f"{name:26s} {s_ms:10.2f} {d_ms:11.2f} {size:9d} {err:9.2g}")
    base = rows[0]
    print(f"ratio cubic / affine: server {rows[1][1] / base[1]:.2f}x, decrypt {rows[1][2] / base[2]:.2f}x")


if __name__ == "__main__":
    main()
