"""Keep a rule's arithmetic in range: huge finite rows are rescaled by a power of two first.

A finite stack can still overflow inside a rule: squared norms, Gram matrices and pairwise distances
square the entries, so float32 rows of 1e20 (float64 rows of 1e160) give Inf, and Inf - Inf gives NaN
scores, non-converging eigensolvers or an all-NaN output. Every rule therefore runs on a stack whose
largest magnitude ``B`` satisfies

    ``B <= L(dtype, n, d) = sqrt(max(dtype)) / (4 sqrt(n d))``,

so that the sum of the squares of *all* entries stays 16x below the dtype's largest value. A stack
above ``L`` is first promoted to float64 (exact); if it is still above ``L(float64)`` it is multiplied
by ``2^-k`` (exact for normal numbers: only the exponent changes), the rule runs, and a rule that is
positively homogeneous (``rule(c x) = c rule(x)``, ``scaling = 1``) has its output multiplied by
``2^k``; a scale-invariant one (``scaling = 0``, e.g. FLTrust, whose output is scaled by the root
gradient) is left as is. Rules with a fixed absolute threshold (``scaling = None``: centered
clipping's tau, clipping's c) are never rescaled. Normal stacks (gradients, ``B`` far below ``L``:
1.3e15 for float32 at n = 25, d = 500,000) take none of these paths and pay no copy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import torch

from robust.errors import NonFiniteResultError

__all__ = ["from_safe_range", "magnitude", "run_in_range", "safe_limit", "to_safe_range"]

T = TypeVar("T")


def safe_limit(dtype: torch.dtype, n: int, d: int) -> float:
    """``L = sqrt(max(dtype)) / (4 sqrt(n d))``: the largest magnitude a rule is run on."""
    return math.sqrt(torch.finfo(dtype).max) / (4.0 * math.sqrt(n * d))


def magnitude(x: torch.Tensor, stat: torch.Tensor | None) -> float:
    """An upper bound on ``max |x_ij|`` of a finite stack: from the rule's statistic when it holds
    squared row norms (``(n,)``) or a Gram matrix (``(n, n)``, its diagonal), else from the entries."""
    if stat is not None:
        sq = torch.diagonal(stat) if stat.ndim == 2 else stat
        return math.sqrt(max(float(sq.max()), 0.0))
    lo, hi = torch.aminmax(x)
    return max(-float(lo), float(hi))


def to_safe_range(
    x: torch.Tensor, stat: torch.Tensor | None, scaling: int | None, force: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """``(x', stat', k)`` with ``x = x' 2^k`` and ``max |x'| <= L(x'.dtype)`` where that is possible.

    ``stat'`` is ``stat`` when ``x`` is unchanged, else ``None`` (the rule recomputes it). ``force``:
    promote to float64 even when the bound holds (a retry after an overflow)."""
    if scaling is None:
        return x, stat, 0
    n, d = int(x.shape[0]), int(x.shape[1])
    if not force:
        if magnitude(x, stat) <= safe_limit(x.dtype, n, d):
            return x, stat, 0
    bound = magnitude(x, None)  # the statistic may itself have overflowed: use the entries
    if not force and bound <= safe_limit(x.dtype, n, d):
        return x, stat, 0
    x = x.to(torch.float64)
    limit = safe_limit(torch.float64, n, d)
    if bound <= limit:
        return x, None, 0
    k = math.frexp(bound)[1] - math.frexp(limit)[1] + 1
    return x * math.ldexp(1.0, -k), None, k


def from_safe_range(
    out: torch.Tensor, k: int, dtype: torch.dtype, scaling: int | None, who: str, check: bool = True
) -> torch.Tensor:
    """Undo :func:`to_safe_range` on a rule's output (times ``2^k`` when ``scaling == 1``), cast back
    to the stack's dtype; raises :class:`NonFiniteResultError` if the result is not finite (checked
    when ``check`` or when the output was rescaled or cast)."""
    changed = out.dtype != dtype
    if k and scaling == 1:
        out = out * math.ldexp(1.0, k)
    if changed:
        out = out.to(dtype)
    if (check or changed) and not bool(torch.isfinite(out).all()):
        raise NonFiniteResultError(
            f"{who}: got a non-finite result from a finite stack (it overflows {dtype}); "
            f"want entries of magnitude below {torch.finfo(dtype).max:.3g}"
        )
    return out


def run_in_range(
    x: torch.Tensor,
    stat: torch.Tensor | None,
    scaling: int | None,
    who: str,
    fn: Callable[[torch.Tensor, torch.Tensor | None, int], tuple[torch.Tensor, T]],
    check: bool = True,
) -> tuple[torch.Tensor, T]:
    """Run ``fn(x, stat, k) -> (out, aux)`` in the safe range (on ``x 2^-k``) and map ``out`` back.

    With a statistic (squared row norms or a Gram matrix) the bound is known before the run and a
    stack above it is rescaled first. Without one (the coordinate-wise rules, which only add and
    compare) the rule runs as is and, only if its output is not finite, once more on the stack
    promoted to float64 and rescaled; such rules must be stateless (they may run twice)."""
    dtype = x.dtype
    if scaling is not None and stat is not None:
        xs, stat, k = to_safe_range(x, stat, scaling)
        out, aux = fn(xs, stat, k)
        return from_safe_range(out, k, dtype, scaling, who, check), aux
    out, aux = fn(x, stat, 0)
    if scaling is not None and not bool(torch.isfinite(out).all()):
        xs, _, k = to_safe_range(x, None, scaling, force=True)
        out, aux = fn(xs, None, k)
        return from_safe_range(out, k, dtype, scaling, who, True), aux
    return from_safe_range(out, 0, dtype, scaling, who, check), aux
